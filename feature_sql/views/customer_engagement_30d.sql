-- Product usage in the 7 and 30 days before as_of, from events that happened and arrived before it.
with spine_rows as (
    select customer_id, as_of from spine
),

usage as (
    select customer_id, event_type, ts, ingested_at from events
),

in_window as (
    select s.customer_id, s.as_of, u.event_type, u.ts
    from spine_rows as s
    inner join usage as u
        on u.customer_id = s.customer_id
        and u.ts < s.as_of
        and u.ts >= s.as_of - interval 30 day
        and u.ingested_at < s.as_of
),

aggregated as (
    select
        customer_id,
        as_of,
        count(*) filter (where event_type = 'login' and ts >= as_of - interval 7 day) as logins_7d,
        count(*) filter (where event_type = 'login') as logins_30d,
        count(*) filter (where event_type = 'page_view') as page_views_30d,
        count(*) filter (where event_type = 'feature_use') as feature_uses_30d,
        count(distinct date_trunc('day', ts)) as active_days_30d,
        max(ts) filter (where event_type = 'login') as last_login_ts
    from in_window
    group by customer_id, as_of
),

final as (
    select
        s.customer_id,
        s.as_of,
        coalesce(a.logins_7d, 0)::bigint as login_frequency_7d,
        coalesce(a.logins_30d, 0)::bigint as logins_30d,
        coalesce(a.page_views_30d, 0)::bigint as page_views_30d,
        coalesce(a.feature_uses_30d, 0)::bigint as feature_uses_30d,
        coalesce(a.active_days_30d, 0)::bigint as active_days_30d,
        (a.logins_7d / nullif(a.logins_30d * 7.0 / 30.0, 0))::double as login_trend_7d_vs_30d,
        coalesce(date_diff('day', a.last_login_ts, s.as_of), 30)::bigint as days_since_last_login
    from spine_rows as s
    left join aggregated as a
        on a.customer_id = s.customer_id and a.as_of = s.as_of
)

select * from final
