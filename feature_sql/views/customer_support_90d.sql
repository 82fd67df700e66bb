-- Support load in the 30 and 90 days before as_of, from tickets opened and recorded before it.
with spine_rows as (
    select customer_id, as_of from spine
),

opened as (
    select customer_id, created_at, ingested_at, priority from tickets
),

in_window as (
    select s.customer_id, s.as_of, o.created_at, o.priority
    from spine_rows as s
    inner join opened as o
        on o.customer_id = s.customer_id
        and o.created_at < s.as_of
        and o.created_at >= s.as_of - interval 90 day
        and o.ingested_at < s.as_of
),

aggregated as (
    select
        customer_id,
        as_of,
        count(*) as tickets_90d,
        count(*) filter (where priority in ('high', 'urgent')) as high_priority_90d,
        count(*) filter (where created_at >= as_of - interval 30 day) as tickets_30d,
        max(created_at) as last_ticket_ts
    from in_window
    group by customer_id, as_of
),

final as (
    select
        s.customer_id,
        s.as_of,
        coalesce(a.tickets_90d, 0)::bigint as support_tickets_90d,
        coalesce(a.high_priority_90d, 0)::bigint as high_priority_tickets_90d,
        coalesce(a.tickets_30d, 0)::bigint as support_tickets_30d,
        coalesce(date_diff('day', a.last_ticket_ts, s.as_of), 90)::bigint as days_since_last_ticket
    from spine_rows as s
    left join aggregated as a
        on a.customer_id = s.customer_id and a.as_of = s.as_of
)

select * from final
