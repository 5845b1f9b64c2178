//! Calendars (issue 16) through a real node, a real `redis-server` and the real `rota` binary: a
//! calendar's excluded window makes a job's fires skipped (recorded), omitted (no record) or moved
//! forward (one fire at the window's end), and the preview says which before they happen; a
//! calendar a job names cannot be deleted, and a job cannot name a calendar that does not exist;
//! bad calendars, bad .ics files and calendars that leave a job no fire are refused naming the
//! field (the line, for an .ics), with nothing written; the CLI puts, lists and deletes them and
//! previews a schedule with one. (The dates, windows, zones and daylight saving are table-tested
//! in `job::calendar`; the store's part on both stores in `store_conformance.rs`; calendars across
//! shards in `shards.rs`; the chaos runner's calendar jobs in `chaos.rs`.)
#[macro_use]
mod common;

use std::time::Duration;

use common::{eventually, executions, ms, rota, state, text, Backend, RedisServer, TestNode};
use rota::pb;
use tonic::Code;

/// "HH:MM:SS" of an instant, UTC.
fn clock(ms: i64) -> String {
    rota::job::ms_to_datetime(ms).format("%H:%M:%S").to_string()
}

fn window(from: i64, to: i64) -> String {
    format!("{}-{}", clock(from), clock(to))
}

async fn put_calendar(node: &TestNode, c: pb::Calendar) -> Result<pb::Calendar, tonic::Status> {
    let r = node.client().await.put_calendar(pb::PutCalendarRequest { calendar: Some(c), ics: String::new() }).await?;
    Ok(r.into_inner().calendar.unwrap_or_default())
}

fn every_job(id: &str, every_ms: i64, anchor: i64, calendar: &str) -> pb::Job {
    let dur = prost_types::Duration { seconds: every_ms / 1000, nanos: 0 };
    pb::Job {
        id: id.into(),
        schedule: Some(pb::job::Schedule::Every(dur)),
        anchor: Some(rota::pb::timestamp(anchor)),
        handler: "noop".into(),
        calendars: vec![calendar.into()],
        ..Default::default()
    }
}

/// A daily 09:00 Berlin schedule with the `holidays` calendar, from Christmas Eve 2037.
const CHRISTMAS: [&str; 8] = [
    "--cron",
    "0 0 9 * * *",
    "--tz",
    "Europe/Berlin",
    "--calendar",
    "holidays",
    "--start-time",
    "2037-12-24T00:00:00+01:00",
];

/// `rota job next ARGS --json` of a schedule not yet put, parsed.
async fn next_json(node: &TestNode, args: &[&str]) -> serde_json::Value {
    let o = rota(node, &[&["job", "next"], args, &["--json"]].concat()).await;
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    serde_json::from_slice(&o.stdout).expect("json")
}

async fn preview(node: &TestNode, id: &str, count: u32) -> Vec<(i64, bool, Vec<String>)> {
    let req = pb::PreviewScheduleRequest {
        target: Some(pb::preview_schedule_request::Target::JobId(id.into())),
        count,
        after: None,
    };
    let r = node.client().await.preview_schedule(req).await.expect("preview").into_inner();
    r.fires.into_iter().map(|f| (ms(&f.time), f.skipped, f.notes)).collect()
}

/// Three jobs on one 2 s grid, each naming a calendar that excludes the same few seconds: `skip`
/// records the two instants inside skipped (naming the calendar), `omit` makes nothing of them,
/// `forward` makes one fire at the window's end (its own instant, off the grid). Every other
/// instant runs once. The preview, asked before, named each of these.
#[tokio::test]
async fn a_calendar_skips_omits_or_forwards_the_fires_in_its_window_as_the_preview_said() {
    let redis = RedisServer::start();
    let node = TestNode::start(&Backend::Redis(redis.url()), "n1", &[]).await;
    let mut c = node.client().await;
    // The grid: A, A+2s, ... with A half a second past a whole second; the window [A+3.5s, A+7.5s)
    // (whole seconds, as a calendar's times are) holds A+4s and A+6s.
    let a = (rota::clock::now_ms() / 1000 + 3) * 1000 + 500;
    let (from, to) = (a + 3_500, a + 7_500);
    let modes = [
        ("skip", pb::CalendarOnExcluded::Skip),
        ("omit", pb::CalendarOnExcluded::Omit),
        ("forward", pb::CalendarOnExcluded::Forward),
    ];
    for (name, on) in modes {
        let cal = pb::Calendar {
            name: format!("cal-{name}"),
            excluded_windows: vec![window(from, to)],
            on_excluded: on as i32,
            ..Default::default()
        };
        put_calendar(&node, cal).await.expect("put calendar");
        let job = every_job(&format!("job-{name}"), 2_000, a, &format!("cal-{name}"));
        c.put_job(pb::PutJobRequest { job: Some(job) }).await.expect("put job");
    }
    let grid = |k: i64| a + 2_000 * k;
    let skipped_note = vec!["skipped by calendar cal-skip: recorded skipped, not run".to_string()];
    assert_eq!(
        preview(&node, "job-skip", 6).await,
        vec![
            (grid(0), false, vec![]),
            (grid(1), false, vec![]),
            (grid(2), true, skipped_note.clone()),
            (grid(3), true, skipped_note),
            (grid(4), false, vec![]),
            (grid(5), false, vec![]),
        ]
    );
    let omit = preview(&node, "job-omit", 3).await;
    assert_eq!(omit.iter().map(|f| f.0).collect::<Vec<_>>(), [grid(0), grid(1), grid(4)]);
    assert_eq!(omit[2].2, ["calendar cal-omit omits the schedule's instants before it (not recorded)"]);
    let forward = preview(&node, "job-forward", 4).await;
    assert_eq!(forward.iter().map(|f| f.0).collect::<Vec<_>>(), [grid(0), grid(1), to, grid(4)]);
    assert!(forward[2].2[0].starts_with("moved forward by calendar cal-forward from "), "{forward:?}");

    // Wait for the grid's sixth instant to have run on every job.
    for (name, _) in modes {
        let job = format!("job-{name}");
        eventually(Duration::from_secs(40), &format!("{job} ran past the window"), || {
            let mut c = c.clone();
            let job = job.clone();
            async move {
                let runs = executions(&mut c, &job).await;
                runs.iter()
                    .any(|e| ms(&e.scheduled_time) == grid(5) && state(e) == pb::ExecutionState::Succeeded)
                    .then_some(())
            }
        })
        .await;
    }
    let records = |name: &'static str| {
        let mut c = c.clone();
        async move {
            let mut r: Vec<(i64, pb::ExecutionState, String)> = executions(&mut c, &format!("job-{name}"))
                .await
                .iter()
                .filter(|e| ms(&e.scheduled_time) <= grid(5))
                .map(|e| (ms(&e.scheduled_time), state(e), e.error.clone()))
                .collect();
            r.sort();
            r
        }
    };
    let ok = |t: i64| (t, pb::ExecutionState::Succeeded, String::new());
    let skip = |t: i64| (t, pb::ExecutionState::Skipped, "skipped: calendar cal-skip".to_string());
    assert_eq!(
        records("skip").await,
        [ok(grid(0)), ok(grid(1)), skip(grid(2)), skip(grid(3)), ok(grid(4)), ok(grid(5))]
    );
    assert_eq!(records("omit").await, [ok(grid(0)), ok(grid(1)), ok(grid(4)), ok(grid(5))]);
    assert_eq!(records("forward").await, [ok(grid(0)), ok(grid(1)), ok(to), ok(grid(4)), ok(grid(5))]);
    // The forwarded fire's id is its own instant: a fire of the job like any other.
    let fwd = executions(&mut c, "job-forward").await;
    let moved = fwd.iter().find(|e| ms(&e.scheduled_time) == to).expect("the forwarded fire");
    assert_eq!(moved.fire_id, format!("job-forward@{to}"));
}

/// What a calendar may not do, through the API and the CLI: a job naming a calendar that does not
/// exist (or twice), a calendar that leaves a job no fire, a calendar in use deleted, a bad
/// calendar or .ics file; each refused naming the field, nothing written. And what it may: the
/// CLI puts one with an .ics file's dates, lists it, previews a schedule not yet put with it, a
/// jobs file names it, and it is deleted once no job does.
#[tokio::test]
async fn calendars_are_refused_naming_the_field_and_cannot_be_deleted_while_named() {
    let redis = RedisServer::start();
    let node = TestNode::start(&Backend::Redis(redis.url()), "n1", &[]).await;
    let mut c = node.client().await;
    let base = || pb::Calendar { name: "ok".into(), excluded_dates: vec!["2026-12-25".into()], ..Default::default() };
    let bad: Vec<(pb::Calendar, &str, &str)> = vec![
        (pb::Calendar { name: "".into(), ..base() }, "", "name: is required"),
        (pb::Calendar { name: "a b".into(), ..base() }, "", "name: 'a b' has ' '"),
        (pb::Calendar { time_zone: "Mars/Base".into(), ..base() }, "", "time_zone: "),
        (
            pb::Calendar { excluded_dates: vec!["2026-12-25".into(), "2026-13-01".into()], ..base() },
            "",
            "excluded_dates[1]: ",
        ),
        (pb::Calendar { excluded_dates: vec![], ..base() }, "", "excluded_dates: a calendar excludes something"),
        (
            pb::Calendar { excluded_windows: vec!["noon".into()], ..base() },
            "",
            "excluded_windows[0]: 'noon' has no day",
        ),
        (pb::Calendar { excluded_windows: vec!["mon 9:00-10:00".into()], ..base() }, "", "excluded_windows[0]: "),
        (pb::Calendar { included_dates: vec!["tomorrow".into()], ..base() }, "", "included_dates[0]: "),
        (pb::Calendar { on_excluded: 9, ..base() }, "", "on_excluded: 9 is not a CalendarOnExcluded"),
        (base(), "BEGIN:VCALENDAR\nBEGIN:VEVENT\nDTSTART:25/12/2026\nEND:VEVENT\nEND:VCALENDAR\n", "ics: line 3: "),
        (base(), "not a calendar", "ics: line 1: "),
        (
            base(),
            "BEGIN:VCALENDAR\nBEGIN:VEVENT\nDTSTART:20260101\nDTEND:20400101\nEND:VEVENT\nEND:VCALENDAR\n",
            "ics: an event's dates: ",
        ),
    ];
    for (cal, ics, want) in bad {
        let e = c
            .put_calendar(pb::PutCalendarRequest { calendar: Some(cal.clone()), ics: ics.into() })
            .await
            .expect_err(want);
        assert_eq!(e.code(), Code::InvalidArgument, "{cal:?}: {e:?}");
        assert!(e.message().starts_with(want), "{cal:?}: {}", e.message());
    }
    let e = c.put_calendar(pb::PutCalendarRequest { calendar: None, ics: String::new() }).await.expect_err("none");
    assert_eq!((e.code(), e.message()), (Code::InvalidArgument, "calendar: is required"));
    let listed = c.list_calendars(pb::ListCalendarsRequest {}).await.expect("list").into_inner();
    assert!(listed.calendars.is_empty(), "nothing written: {listed:?}");

    // The CLI: a calendar from flags and an .ics file.
    let dir = tempfile::tempdir().expect("tempdir");
    let ics = dir.path().join("holidays.ics");
    std::fs::write(
        &ics,
        "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nBEGIN:VEVENT\r\nSUMMARY:Christmas\r\nDTSTART;VALUE=DATE:20371225\r\n\
         DTEND;VALUE=DATE:20371227\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n",
    )
    .expect("write ics");
    let ics_arg = ics.display().to_string();
    let o = rota(
        &node,
        &[
            "calendar",
            "put",
            "holidays",
            "--tz",
            "Europe/Berlin",
            "--exclude-date",
            "01-01",
            "--ics",
            &ics_arg,
            "--exclude-window",
            "sat,sun",
            "--include-date",
            "2037-12-26",
            "--on-excluded",
            "skip",
        ],
    )
    .await;
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let o = rota(&node, &["calendar", "list", "--json"]).await;
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
    assert_eq!(v["calendars"][0]["excluded_dates"], serde_json::json!(["01-01", "2037-12-25..2037-12-26"]), "{v}");
    assert_eq!(v["calendars"][0]["time_zone"], "Europe/Berlin");
    // A broken .ics through the CLI names its line; nothing is written.
    let broken = dir.path().join("broken.ics");
    std::fs::write(&broken, "BEGIN:VCALENDAR\nBEGIN:VEVENT\nEND:VCALENDAR\n").expect("write");
    let o = rota(
        &node,
        &["calendar", "put", "other", "--exclude-date", "2026-01-01", "--ics", &broken.display().to_string()],
    )
    .await;
    assert_ne!(o.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&o.stderr).contains("ics: line 2: "), "{}", text(&o));

    // The preview of a schedule not yet put, with the calendar: Christmas Eve fires (Thursday),
    // Christmas is skipped, the 26th (a Saturday, included) fires, the 27th (Sunday) is skipped.
    let v = next_json(&node, &[&CHRISTMAS[..], &["--count", "4"]].concat()).await;
    let skipped: Vec<bool> = v["fires"].as_array().expect("fires").iter().map(|f| f["skipped"] == true).collect();
    assert_eq!(skipped, [false, true, false, true], "{v}");
    assert_eq!(v["fires"][1]["notes"][0], "skipped by calendar holidays: recorded skipped, not run");
    // Daylight saving in the calendar's zone: Berlin springs forward at 02:00 on 2037-03-29. A
    // night window 01:30-03:30 moves the 01:30 fire (and the cron's fire at the gap, 03:00) to
    // 03:30 CEST, one fire.
    let night = pb::Calendar {
        name: "night".into(),
        time_zone: "Europe/Berlin".into(),
        excluded_windows: vec!["01:30-03:30".into()],
        on_excluded: pb::CalendarOnExcluded::Forward as i32,
        ..Default::default()
    };
    put_calendar(&node, night).await.expect("put");
    let v = next_json(
        &node,
        &[
            "--cron",
            "0 */30 * * * *",
            "--tz",
            "Europe/Berlin",
            "--calendar",
            "night",
            "--start-time",
            "2037-03-29T00:00:00+01:00",
            "--count",
            "5",
        ],
    )
    .await;
    let local: Vec<&str> =
        v["fires"].as_array().expect("fires").iter().filter_map(|f| f["local_time"].as_str()).collect();
    assert_eq!(
        local,
        [
            "2037-03-29T00:00:00+01:00",
            "2037-03-29T00:30:00+01:00",
            "2037-03-29T01:00:00+01:00",
            "2037-03-29T03:30:00+02:00",
            "2037-03-29T04:00:00+02:00"
        ],
        "{v}"
    );
    assert_eq!(v["fires"][3]["notes"][0], "moved forward by calendar night from 2037-03-29 01:30:00", "{v}");
    // With max_fires 2, a skipped instant is no fire: the preview ends at the second that runs.
    let v = next_json(&node, &[&CHRISTMAS[..], &["--max-fires", "2", "--count", "4"]].concat()).await;
    assert_eq!(v["fires"].as_array().map(Vec::len), Some(3), "{v}");
    assert!(v["fires"][2]["notes"].to_string().contains("last fire: the job's max_fires (2)"), "{v}");

    // Jobs naming calendars.
    let job = |id: &str, cals: &[&str]| pb::Job {
        id: id.into(),
        schedule: Some(pb::job::Schedule::Cron("0 0 9 * * *".into())),
        handler: "noop".into(),
        calendars: cals.iter().map(|s| s.to_string()).collect(),
        ..Default::default()
    };
    for (j, want) in [
        (job("j1", &["nope"]), "calendars[0]: no calendar 'nope' (put it first"),
        (job("j1", &["holidays", "holidays"]), "calendars[1]: 'holidays' is named twice"),
        (job("j1", &["a", "b", "c", "d", "e", "f", "g", "h", "i"]), "calendars: more than 8 calendars"),
        (job("j1", &["bad name"]), "calendars[0]: 'bad name' has ' '"),
    ] {
        let e = c.put_job(pb::PutJobRequest { job: Some(j) }).await.expect_err(want);
        assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
        assert!(e.message().starts_with(want), "{}", e.message());
    }
    let gone = c.get_job(pb::GetJobRequest { id: "j1".into() }).await.expect_err("nothing written");
    assert_eq!(gone.code(), Code::NotFound);
    // A calendar that excludes every day leaves the job no fire.
    let always = pb::Calendar { name: "always".into(), excluded_windows: vec!["mon-sun".into()], ..Default::default() };
    put_calendar(&node, always).await.expect("put");
    let e = c.put_job(pb::PutJobRequest { job: Some(job("j1", &["always"])) }).await.expect_err("never fires");
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(e.message().starts_with("calendars: always exclude every instant of the schedule"), "{}", e.message());

    c.put_job(pb::PutJobRequest { job: Some(job("uses-it", &["holidays"])) }).await.expect("put");
    let got = c.get_job(pb::GetJobRequest { id: "uses-it".into() }).await.expect("get").into_inner().job.expect("job");
    assert_eq!(got.calendars, ["holidays"]);
    // A jobs file names it too.
    let file = dir.path().join("jobs.toml");
    std::fs::write(
        &file,
        "[[job]]\nid = \"from-file\"\ncron = \"0 0 9 * * *\"\nhandler = \"noop\"\ncalendars = [\"holidays\"]\n",
    )
    .expect("write");
    let o = rota(&node, &["job", "put", "--file", &file.display().to_string()]).await;
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));

    // In use: refused, naming both jobs; still there.
    let e = c.delete_calendar(pb::DeleteCalendarRequest { name: "holidays".into() }).await.expect_err("in use");
    assert_eq!(e.code(), Code::FailedPrecondition);
    assert!(e.message().contains("from-file, uses-it"), "{}", e.message());
    let o = rota(&node, &["calendar", "delete", "holidays"]).await;
    assert_ne!(o.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&o.stderr).contains("is named by jobs from-file, uses-it"), "{}", text(&o));
    // The refused delete left no mark: a job may still name it.
    c.put_job(pb::PutJobRequest { job: Some(job("third", &["holidays"])) }).await.expect("put after a refused delete");
    for id in ["uses-it", "from-file", "third"] {
        c.delete_job(pb::DeleteJobRequest { id: id.into() }).await.expect("delete job");
    }
    let o = rota(&node, &["calendar", "delete", "holidays"]).await;
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let e = c.delete_calendar(pb::DeleteCalendarRequest { name: "holidays".into() }).await.expect_err("gone");
    assert_eq!(e.code(), Code::NotFound);
    let e = c.delete_calendar(pb::DeleteCalendarRequest { name: "-x".into() }).await.expect_err("bad name");
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(e.message().starts_with("name: "), "{}", e.message());
    let o = rota(&node, &["calendar", "list"]).await;
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(String::from_utf8_lossy(&o.stdout).contains("always"), "{}", text(&o));
}

/// A calendar changed while a job's next fire waits: an `omit` window put over that very instant
/// moves it on at its claim (no fire, no record), and a put that takes away the window a job's
/// next fire passed over brings that fire back (PutCalendar's `follow_calendar`), which then runs.
#[tokio::test]
async fn a_calendar_changed_while_a_fire_waits_decides_at_its_claim_and_brings_passed_over_fires_back() {
    let redis = RedisServer::start();
    let node = TestNode::start(&Backend::Redis(redis.url()), "n1", &[]).await;
    let mut c = node.client().await;
    let now = rota::clock::now_ms() / 1000 * 1000;
    let omit = |name: &str, windows: Vec<String>| pb::Calendar {
        name: name.into(),
        excluded_windows: windows,
        on_excluded: pb::CalendarOnExcluded::Omit as i32,
        ..Default::default()
    };
    let reader = c.clone();
    let next_fire = |id: &'static str| {
        let mut c = reader.clone();
        async move {
            let j = c.get_job(pb::GetJobRequest { id: id.into() }).await.expect("get").into_inner().job.expect("job");
            ms(&j.next_fire_time)
        }
    };
    // Far away windows first: the jobs' next fires are their grids'.
    let far = window(now - 7_200_000, now - 7_000_000);
    put_calendar(&node, omit("changed", vec![far.clone()])).await.expect("put");
    let soon = now + 6_000;
    c.put_job(pb::PutJobRequest { job: Some(every_job("waits", 60_000, soon, "changed")) }).await.expect("put job");
    assert_eq!(next_fire("waits").await, soon);
    // The window now covers the waiting instant: at its claim it moves on to the next minute.
    put_calendar(&node, omit("changed", vec![window(soon - 1_000, soon + 1_000)])).await.expect("put");
    assert_eq!(next_fire("waits").await, soon, "a later next fire is left to the claim");
    eventually(Duration::from_secs(20), "the claim moved the next fire on", || async {
        (next_fire("waits").await == soon + 60_000).then_some(())
    })
    .await;
    assert!(executions(&mut c, "waits").await.is_empty(), "no fire, no record");

    // A job whose next fire passed over a window; the window taken away brings it back.
    let back = rota::clock::now_ms() / 1000 * 1000 + 8_000;
    put_calendar(&node, omit("passed", vec![window(back - 1_000, back + 1_000)])).await.expect("put");
    c.put_job(pb::PutJobRequest { job: Some(every_job("comes-back", 20_000, back, "passed")) }).await.expect("put job");
    assert_eq!(next_fire("comes-back").await, back + 20_000, "the window's instant passed over");
    put_calendar(&node, omit("passed", vec![far])).await.expect("put");
    assert_eq!(next_fire("comes-back").await, back, "brought back by the put");
    eventually(Duration::from_secs(30), "the fire brought back ran", || {
        let mut c = c.clone();
        async move {
            executions(&mut c, "comes-back")
                .await
                .iter()
                .any(|e| ms(&e.scheduled_time) == back && state(e) == pb::ExecutionState::Succeeded)
                .then_some(())
        }
    })
    .await;
}

/// A jobs file's `[[calendar]]` tables are put before its jobs, which may name them (a fresh
/// cluster needs nothing put by hand first); a bad one stops `server --check` naming it and its
/// field; `job put --file` refuses them rather than drop them.
#[tokio::test]
async fn a_jobs_file_declares_the_calendars_its_jobs_name() {
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("jobs.toml");
    std::fs::write(
        &file,
        "[[calendar]]\nname = \"weekends\"\nexcluded_windows = [\"sat,sun\"]\non_excluded = \"omit\"\n\n\
         [[job]]\nid = \"weekday\"\ncron = \"0 0 9 * * *\"\nhandler = \"noop\"\ncalendars = [\"weekends\"]\n",
    )
    .expect("write");
    let path = file.display().to_string();
    let node = TestNode::start(&Backend::Redis(redis.url()), "n1", &["--jobs", &path]).await;
    let mut c = node.client().await;
    let job = eventually(Duration::from_secs(20), "the file's job is put", || {
        let mut c = c.clone();
        async move { c.get_job(pb::GetJobRequest { id: "weekday".into() }).await.ok()?.into_inner().job }
    })
    .await;
    assert_eq!(job.calendars, ["weekends"]);
    let cals = c.list_calendars(pb::ListCalendarsRequest {}).await.expect("list").into_inner().calendars;
    assert_eq!(cals.len(), 1);
    assert_eq!((cals[0].name.as_str(), cals[0].on_excluded), ("weekends", pb::CalendarOnExcluded::Omit as i32));
    // Its next fire is on a weekday.
    let next = rota::job::ms_to_datetime(ms(&job.next_fire_time));
    assert!(!matches!(chrono::Datelike::weekday(&next), chrono::Weekday::Sat | chrono::Weekday::Sun), "{next}");

    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "[[calendar]]\nname = \"odd\"\nexcluded_windows = [\"funday\"]\n").expect("write");
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_rota"))
        .args(["server", "--check", "--check-offline", "--jobs", &bad.display().to_string()])
        .output()
        .expect("run");
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success());
    assert!(err.contains("calendar #1 ('odd')") && err.contains("excluded_windows[0]: 'funday' has no day"), "{err}");
    // The same name twice: refused, naming the second.
    std::fs::write(&bad, "[[calendar]]\nname = \"odd\"\nexcluded_dates = [\"12-25\"]\n\n[[calendar]]\nname = \"odd\"\nexcluded_dates = [\"12-26\"]\n").expect("write");
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_rota"))
        .args(["server", "--check", "--check-offline", "--jobs", &bad.display().to_string()])
        .output()
        .expect("run");
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && err.contains("calendar #2 ('odd')") && err.contains("declared twice"), "{err}");
    let o = rota(&node, &["job", "put", "--file", &path]).await;
    assert_ne!(o.status.code(), Some(0));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("[[calendar]] tables are put by a node's jobs file"),
        "{}",
        text(&o)
    );
}
