-- The label: 1 when the customer cancels within $horizon_days days from as_of (inclusive start).
-- Input: spine(customer_id, as_of). Output: one row per spine row with label 0 or 1.
with spine_rows as (
    select customer_id, as_of from spine
),

first_cancellation as (
    select customer_id, min(cancelled_at) as cancelled_at
    from cancellations
    group by customer_id
),

final as (
    select
        s.customer_id,
        s.as_of,
        coalesce(
            c.cancelled_at >= s.as_of and c.cancelled_at < s.as_of + $horizon_days * interval 1 day,
            false
        )::integer as label
    from spine_rows as s
    left join first_cancellation as c on c.customer_id = s.customer_id
)

select * from final
