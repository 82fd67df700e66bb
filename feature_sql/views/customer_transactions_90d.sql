-- Spend in the 30 and 90 days before as_of, from transactions that happened and arrived before it.
with spine_rows as (
    select customer_id, as_of from spine
),

purchases as (
    select customer_id, ts, ingested_at, amount from transactions
),

in_window as (
    select s.customer_id, s.as_of, p.ts, p.amount
    from spine_rows as s
    inner join purchases as p
        on p.customer_id = s.customer_id
        and p.ts < s.as_of
        and p.ts >= s.as_of - interval 90 day
        and p.ingested_at < s.as_of
),

aggregated as (
    select
        customer_id,
        as_of,
        sum(amount) filter (where ts >= as_of - interval 30 day) as spend_30d,
        count(*) filter (where ts >= as_of - interval 30 day) as orders_30d,
        sum(amount) as spend_90d,
        count(*) as orders_90d,
        max(ts) as last_purchase_ts
    from in_window
    group by customer_id, as_of
),

final as (
    select
        s.customer_id,
        s.as_of,
        coalesce(a.spend_30d, 0)::double as total_purchases_30d,
        coalesce(a.orders_30d, 0)::bigint as orders_30d,
        coalesce(a.spend_90d, 0)::double as total_purchases_90d,
        coalesce(a.orders_90d, 0)::bigint as orders_90d,
        (a.spend_30d / nullif(a.spend_90d / 3.0, 0))::double as spend_trend_30d_vs_90d,
        coalesce(date_diff('day', a.last_purchase_ts, s.as_of), 90)::bigint as days_since_last_purchase
    from spine_rows as s
    left join aggregated as a
        on a.customer_id = s.customer_id and a.as_of = s.as_of
)

select * from final
