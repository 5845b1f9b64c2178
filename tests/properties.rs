//! Property tests (proptest) for every parser that takes outside input: the cron parser, the invoke
//! target parser and the queue-entry check; and for the schedule preview, which must name exactly
//! the fires the scheduler makes. They stand in for cargo-fuzz, which needs nightly.
//! Inputs are random strings (must never panic, errors name a field or column) and generated valid
//! inputs (must parse, and round-trip through their rendering).
//!
//! Longer run: `PROPTEST_CASES=200000 cargo test --release --test properties`.
use chrono::{TimeZone, Utc};
use proptest::prelude::*;
use rota::job::cron::Cron;
use rota::job::invoke;
use rota::store::{queue_entry_problem, MAX_QUEUE_ENTRY_BYTES};

/// Pieces cron expressions are made of, so random strings get near the grammar.
fn cron_soup() -> impl Strategy<Value = String> {
    let piece = prop::sample::select(vec![
        "*", "?", "/", ",", "-", "L", "W", "#", " ", "0", "1", "7", "12", "31", "59", "60", "99", "L-3", "5L", "3#2",
        "MON", "FRI-SUN", "JAN", "DEC", "@daily", "@hourly", "@every", "2099", "1970", "\t", "é", "\u{0}",
    ]);
    prop::collection::vec(piece, 0..16).prop_map(|v| v.concat())
}

/// A field: `*`, a value, a range, a list or a step, within `lo..=hi`.
fn field(lo: u32, hi: u32) -> impl Strategy<Value = String> {
    prop_oneof![
        Just("*".to_string()),
        (lo..=hi).prop_map(|v| v.to_string()),
        (lo..=hi, lo..=hi).prop_map(|(a, b)| format!("{}-{}", a.min(b), a.max(b))),
        prop::collection::btree_set(lo..=hi, 1..4).prop_map(|s| s
            .iter()
            .map(u32::to_string)
            .collect::<Vec<_>>()
            .join(",")),
        (1..=(hi - lo).max(1)).prop_map(|s| format!("*/{s}")),
    ]
}

fn valid_cron() -> impl Strategy<Value = String> {
    (field(0, 59), field(0, 59), field(0, 23), field(1, 28), field(1, 12), field(0, 6)).prop_map(
        |(s, m, h, d, mo, w)| {
            // Quartz style: one of day-of-month / day-of-week is '?'.
            let (d, w) = if w == "*" { (d, "?".to_string()) } else { ("?".to_string(), w) };
            format!("{s} {m} {h} {d} {mo} {w}")
        },
    )
}

/// 2000 per property in the suite; `PROPTEST_CASES` for a longer run.
fn cases() -> u32 {
    std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(2000)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn cron_never_panics_and_says_why(s in prop_oneof![cron_soup(), "\\PC{0,40}"]) {
        match Cron::parse(&s) {
            // What parses renders to a form that parses to the same schedule.
            Ok(c) => prop_assert_eq!(Cron::parse(&c.to_string()).ok(), Some(c)),
            Err(e) => prop_assert!(!e.to_string().is_empty()),
        }
    }

    #[test]
    fn valid_cron_parses_round_trips_and_fires_forward(expr in valid_cron(), start in 0i64..4_000_000_000) {
        let s = Cron::parse(&expr).map_err(|e| TestCaseError::fail(format!("{expr}: {e}")))?;
        let shown = s.to_string();
        prop_assert_eq!(Cron::parse(&shown).ok(), Some(s.clone()), "{} shown as {}", expr, shown);
        let after = Utc.timestamp_opt(start, 0).single().expect("in range");
        let next = s.next_after(chrono_tz::UTC, after);
        prop_assert!(next.is_some(), "{expr} never fires after {after}");
        let next = next.expect("some");
        prop_assert!(next > after);
        // Nothing fires in between: the instant before `next` leads to `next` again.
        prop_assert_eq!(s.next_after(chrono_tz::UTC, next - chrono::Duration::milliseconds(1)), Some(next));
    }

    #[test]
    fn invoke_never_panics_and_round_trips(s in "\\PC{0,60}") {
        match invoke::parse(&s) {
            Ok(t) => prop_assert_eq!(invoke::parse(&invoke::render(&t)), Ok(t)),
            Err(e) => prop_assert!(e.column >= 1 && e.column <= s.chars().count() + 1, "column {} for {:?}", e.column, s),
        }
    }

    #[test]
    fn generated_invoke_targets_round_trip(
        handler in "[a-z][a-z0-9_]{0,8}(\\.[a-z][a-z0-9_]{0,8}){0,2}",
        strings in prop::collection::vec("\\PC{0,12}", 0..4),
        ints in prop::collection::vec(any::<i32>(), 0..3),
        flag in any::<bool>(),
    ) {
        let mut args: Vec<serde_json::Value> = strings.into_iter().map(serde_json::Value::from).collect();
        args.extend(ints.into_iter().map(serde_json::Value::from));
        args.push(serde_json::Value::from(flag));
        let t = invoke::InvokeTarget { handler, args };
        let text = invoke::render(&t);
        prop_assert_eq!(invoke::parse(&text), Ok(t), "rendered as {}", text);
    }

    #[test]
    fn queue_entry_check_never_panics(s in "\\PC{0,80}") {
        let _ = queue_entry_problem(&s);
    }

    #[test]
    fn every_real_fire_id_is_a_good_queue_entry(
        job in "[A-Za-z0-9][A-Za-z0-9._-]{0,127}",
        ms in 0i64..=i64::MAX,
        token in "[0-9a-f-]{1,36}",
    ) {
        prop_assert_eq!(queue_entry_problem(&rota::execution::scheduled_fire_id(&job, ms)), None);
        prop_assert_eq!(queue_entry_problem(&rota::execution::manual_fire_id(&job, &token)), None);
    }

    #[test]
    fn oversized_or_versioned_entries_are_refused(pad in MAX_QUEUE_ENTRY_BYTES..4 * MAX_QUEUE_ENTRY_BYTES, v in 0u32..10) {
        let big = format!("j@{}", "1".repeat(pad));
        prop_assert!(queue_entry_problem(&big).is_some_and(|r| r.starts_with("oversized")));
        let versioned = format!(r#"{{"v":{v},"fire":"j@1"}}"#);
        prop_assert!(queue_entry_problem(&versioned).is_some_and(|r| r.starts_with("malformed")));
    }

    #[test]
    fn the_preview_names_exactly_the_fires_the_scheduler_claims(
        spec in schedule_spec(),
        start in 1_700_000_000_000i64..1_900_000_000_000,
        late in prop::collection::vec(0i64..5_000, 25),
    ) {
        let job = rota::job::Job::new(spec.clone()).map_err(|e| TestCaseError::fail(format!("{spec:?}: {e}")))?;
        let preview: Vec<i64> = job.schedule.preview(start, 20).into_iter().map(|u| u.at_ms).collect();
        // What PutJob writes, then what each claim moves the watermark to: each instant claimed
        // a little late (under the misfire threshold), as a loaded master claims them.
        let mut rec = rota::store::JobRecord::new(spec.clone(), job.next_after_ms(start), None, 0);
        let mut claimed = Vec::new();
        for l in late.iter().take(20) {
            let Some(t) = rec.next_ms else { break };
            let claims = rota::scheduler::plan(&job, &rec, t + l, 60_000, "n1", 1, None);
            prop_assert_eq!(claims.len(), 1);
            prop_assert_eq!(&claims[0].exec.fire_id, &rota::execution::scheduled_fire_id(&spec.id, t));
            claimed.push(claims[0].sched_ms);
            rec.next_ms = claims[0].next_ms;
        }
        prop_assert_eq!(preview, claimed, "{:?}", spec);
    }
}

proptest! {
    // A fortieth of the cases (50 in the suite, about 20 s unoptimised): each walks up to 60
    // claims and a preview through calendars, some of them instant by instant.
    #![proptest_config(ProptestConfig { cases: cases() / 40, failure_persistence: None, ..ProptestConfig::default() })]

    /// With calendars (issue 16): the preview names exactly the instants the claims make, each a
    /// fire or, where a `skip` calendar excludes it, a skipped record; an instant a calendar omits
    /// or moves forward is never claimed (a claim that only moves the watermark, made when the
    /// search passes a very long excluded stretch, is followed and names nothing).
    #[test]
    fn with_calendars_the_preview_names_exactly_what_the_claims_make(
        spec in schedule_spec(),
        defs in prop::collection::vec(calendar_def(), 1..3),
        start in 1_700_000_000_000i64..1_900_000_000_000,
        late in prop::collection::vec(0i64..5_000, 60),
    ) {
        use rota::job::calendar::{Calendar, Calendars};
        let mut found = std::collections::HashMap::new();
        let mut names = Vec::new();
        for (i, mut d) in defs.into_iter().enumerate() {
            d.name = format!("c{i}");
            let Ok(c) = Calendar::new(d) else { return Ok(()) };
            names.push(c.def.name.clone());
            found.insert(c.def.name.clone(), std::sync::Arc::new(c));
        }
        let spec = rota::job::JobSpec { calendars: names.clone(), ..spec };
        let job = rota::job::Job::new(spec.clone())
            .map_err(|e| TestCaseError::fail(format!("{spec:?}: {e}")))?
            .with_calendars(Calendars::resolve(&names, &found));
        let preview: Vec<(i64, bool)> = job.preview(start, 20, None).into_iter().map(|u| (u.at_ms, u.skipped)).collect();
        let mut rec = rota::store::JobRecord::new(spec.clone(), job.next_after_ms(start), None, 0);
        let mut claimed = Vec::new();
        for l in &late {
            if claimed.len() == 20 {
                break;
            }
            let Some(t) = rec.next_ms else { break };
            let claims = rota::scheduler::plan(&job, &rec, t + l, 60_000, "n1", 1, None);
            prop_assert_eq!(claims.len(), 1);
            let c = &claims[0];
            if !c.moves {
                prop_assert_eq!(&c.exec.fire_id, &rota::execution::scheduled_fire_id(&spec.id, t));
                let skipped = c.exec.state == rota::execution::ExecState::Skipped;
                prop_assert!(skipped || c.exec.state == rota::execution::ExecState::Pending, "{:?}", c.exec.state);
                claimed.push((c.sched_ms, skipped));
            }
            rec.next_ms = c.next_ms;
        }
        if claimed.len() == 20 || rec.next_ms.is_none() {
            prop_assert_eq!(preview, claimed, "{:?} {:?}", spec, found.values().map(|c| &c.def).collect::<Vec<_>>());
        }
    }
}

/// A calendar of every kind of entry, in one of the zones: up to three windows (days and times,
/// past midnight at times), up to four days or ranges, an included day now and then, and what
/// becomes of an excluded fire.
fn calendar_def() -> impl Strategy<Value = rota::job::calendar::CalendarDef> {
    use rota::job::calendar::{CalendarDef, OnExcluded};
    let time = (0u32..24, prop::sample::select(vec![0u32, 15, 30, 45])).prop_map(|(h, m)| format!("{h:02}:{m:02}"));
    let days = prop::sample::select(vec!["", "sat,sun", "mon-fri ", "wed ", "fri-mon "]);
    let window = (days, time.clone(), time).prop_map(|(d, a, b)| match d {
        "sat,sun" => d.to_string(),
        _ => format!("{d}{a}-{b}"),
    });
    let day = (2023i32..2031, 1u32..13, 1u32..29).prop_map(|(y, m, d)| format!("{y}-{m:02}-{d:02}"));
    let date = prop_oneof![
        day.clone(),
        (day.clone(), 0i64..20).prop_map(|(d, n)| {
            let from = chrono::NaiveDate::parse_from_str(&d, "%Y-%m-%d").expect("date");
            format!("{d}..{}", from + chrono::Duration::days(n))
        }),
        (1u32..13, 1u32..29).prop_map(|(m, d)| format!("{m:02}-{d:02}")),
    ];
    (
        prop::collection::vec(window, 0..4),
        prop::collection::vec(date, 0..5),
        prop::collection::vec(day, 0..2),
        prop::sample::select(ZONES.to_vec()),
        prop::sample::select(vec![OnExcluded::Skip, OnExcluded::Omit, OnExcluded::Forward]),
    )
        .prop_map(|(excluded_windows, excluded_dates, included_dates, tz, on_excluded)| CalendarDef {
            name: "c".into(),
            time_zone: tz.to_string(),
            excluded_dates,
            excluded_windows,
            included_dates,
            on_excluded,
            description: String::new(),
        })
}

/// Zones with a 1-hour, a 30-minute and no daylight-saving change, and a half-hour offset.
const ZONES: [&str; 5] = ["", "America/New_York", "Europe/London", "Australia/Lord_Howe", "Asia/Kolkata"];

/// A schedule of every kind, with bounds and a spread now and then.
fn schedule_spec() -> impl Strategy<Value = rota::job::JobSpec> {
    let kind = prop_oneof![
        valid_cron().prop_map(|c| (c, 0u64, None, Vec::new())),
        (1_000u64..10_000_000, prop::option::of(1_600_000_000_000i64..1_900_000_000_000)).prop_map(|(e, a)| (
            String::new(),
            e,
            a,
            Vec::new()
        )),
        prop::collection::vec(1_700_000_000_000i64..1_950_000_000_000, 1..30).prop_map(|at| (
            String::new(),
            0,
            None,
            at
        )),
    ];
    (
        kind,
        prop::sample::select(ZONES.to_vec()),
        prop::option::of(1_700_000_000_000i64..1_900_000_000_000),
        prop::option::of(0i64..200_000_000_000),
        prop_oneof![Just(0u64), 1_000u64..86_400_000],
        "[a-z][a-z0-9-]{0,12}",
    )
        .prop_map(|((cron, every_ms, anchor_ms, at_ms), tz, start_ms, span, spread_ms, id)| rota::job::JobSpec {
            id,
            cron,
            every_ms,
            anchor_ms,
            at_ms,
            start_ms,
            end_ms: start_ms.zip(span).map(|(s, d)| s + d),
            spread_ms,
            time_zone: tz.to_string(),
            handler: "noop".into(),
            ..Default::default()
        })
}
