-- Who gets a prediction at each as-of: customers who signed up before it and had not cancelled.
-- Input: as_of_dates(as_of). Output: one row per (customer_id, as_of).
with dates as (
    select as_of from as_of_dates
),

signed_up as (
    select customer_id, signup_at from customers
),

first_cancellation as (
    select customer_id, min(cancelled_at) as cancelled_at
    from cancellations
    group by customer_id
),

final as (
    select s.customer_id, d.as_of
    from dates as d
    inner join signed_up as s on s.signup_at < d.as_of
    left join first_cancellation as c on c.customer_id = s.customer_id
    where c.cancelled_at is null or c.cancelled_at >= d.as_of
)

select * from final
