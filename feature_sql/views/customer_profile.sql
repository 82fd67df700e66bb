-- Who the customer is at as_of: plan, price, region, channel, age and tenure.
with spine_rows as (
    select customer_id, as_of from spine
),

profile as (
    select customer_id, signup_at, plan, region, channel, monthly_fee, age from customers
),

final as (
    select
        s.customer_id,
        s.as_of,
        date_diff('day', p.signup_at, s.as_of)::bigint as tenure_days,
        p.plan,
        p.region,
        p.channel,
        p.monthly_fee::double as monthly_fee_usd,
        p.age::double as age_years
    from spine_rows as s
    left join profile as p
        on p.customer_id = s.customer_id and p.signup_at < s.as_of
)

select * from final
