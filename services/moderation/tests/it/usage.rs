//! Usage of a scripted month of joins and leaves against minutes computed by hand.

use reqwest::Method;
use serde_json::json;

use crate::support::{self, assert_error};

#[tokio::test]
async fn a_scripted_month_matches_the_minutes_computed_by_hand() {
    let stack = support::stack().await;
    let ops = stack.operator().await;
    let sql = stack.sql().await;
    // (sid, room, joined, left) in UTC; every room counts, calls too.
    let rows: [(&str, &str, Option<&str>, Option<&str>); 8] = [
        (
            "PA_a",
            "live_video_a",
            Some("2026-03-10 10:00:00"),
            Some("2026-03-10 10:30:00"),
        ), // 1800 s
        (
            "PA_b",
            "live_video_a",
            Some("2026-03-10 10:15:00"),
            Some("2026-03-10 11:15:00"),
        ), // 3600 s
        (
            "PA_c",
            "audio_room_b",
            Some("2026-03-10 10:20:00"),
            Some("2026-03-10 10:26:00"),
        ), // 360 s
        (
            "PA_e",
            "call_video_c_1",
            Some("2026-03-10 10:25:00"),
            Some("2026-03-10 10:40:20"),
        ), // 920 s
        // across midnight: 600 s on the 10th, 1200 s on the 11th
        (
            "PA_d",
            "live_video_a",
            Some("2026-03-10 23:50:00"),
            Some("2026-03-11 00:20:00"),
        ),
        // from February: 60 s in March (the 1st)
        (
            "PA_h",
            "live_video_z",
            Some("2026-02-28 23:59:00"),
            Some("2026-03-01 00:01:00"),
        ),
        // still open: counts until now, so to the end of the month: 3600 s on the 31st
        ("PA_f", "live_video_y", Some("2026-03-31 23:00:00"), None),
        // its join was never reported: nothing to count from
        ("PA_g", "live_video_y", None, Some("2026-03-15 12:00:00")),
    ];
    for (sid, room, joined, left) in rows {
        sql.execute(
            "INSERT INTO livekit_participations (participant_sid, room_name, identity, joined_at, left_at)
             VALUES ($1, $2, $1, $3::text::timestamptz, $4::text::timestamptz)",
            &[&sid, &room, &joined.map(|j| format!("{j}+00")), &left.map(|l| format!("{l}+00"))],
        )
        .await
        .unwrap();
    }
    let (status, body) = stack
        .md(Method::GET, "/v1/ops/usage?month=2026-03", ops, None)
        .await;
    assert_eq!(status, 200, "{body}");
    let u = &body["usage"];
    // 10th: 1800 + 3600 + 360 + 920 + 600 = 7280 s = 121.3 min → 121; peak 4 at 10:25
    // (a, b, c, e). 11th: 1200 s = 20 min. 1st: 60 s = 1 min. 31st: 3600 s = 60 min.
    // Month: 7280 + 1200 + 60 + 3600 = 12140 s = 202.3 min → 202.
    assert_eq!(u["month"], json!("2026-03"));
    assert_eq!(u["participantMinutes"], json!(202));
    assert_eq!(u["peakConcurrent"], json!(4));
    assert_eq!(u["quotaParticipantMinutes"], json!(5000));
    assert_eq!(u["quotaConcurrent"], json!(100));
    assert_eq!(
        u["projectedParticipantMinutes"],
        json!(202),
        "a month that is over"
    );
    let days = u["days"].as_array().unwrap();
    assert_eq!(days.len(), 31);
    let day = |d: usize| &days[d - 1];
    assert_eq!(
        day(1),
        &json!({"date": "2026-03-01", "participantMinutes": 1, "peakConcurrent": 1})
    );
    assert_eq!(
        day(10),
        &json!({"date": "2026-03-10", "participantMinutes": 121, "peakConcurrent": 4})
    );
    assert_eq!(
        day(11),
        &json!({"date": "2026-03-11", "participantMinutes": 20, "peakConcurrent": 1})
    );
    assert_eq!(
        day(15),
        &json!({"date": "2026-03-15", "participantMinutes": 0, "peakConcurrent": 0})
    );
    assert_eq!(
        day(31),
        &json!({"date": "2026-03-31", "participantMinutes": 60, "peakConcurrent": 1})
    );
    let sum: i64 = days
        .iter()
        .map(|d| d["participantMinutes"].as_i64().unwrap())
        .sum();
    assert_eq!(sum, 202);

    // February sees its minute of PA_h; a bad month is refused.
    let (_, body) = stack
        .md(Method::GET, "/v1/ops/usage?month=2026-02", ops, None)
        .await;
    assert_eq!(body["usage"]["participantMinutes"], json!(1));
    // `%2B` is `+`: a sign is not a digit (`str::parse` alone took `+202-01`).
    for bad in [
        "2026-13",
        "2026-3",
        "march",
        "2026-03-01",
        "%2B202-03",
        "2026-%2B3",
    ] {
        let (status, body) = stack
            .md(
                Method::GET,
                &format!("/v1/ops/usage?month={bad}"),
                ops,
                None,
            )
            .await;
        assert_error(status, &body, 422, "VALIDATION_ERROR");
    }
    // The current month by default, with a projection.
    let (status, body) = stack.md(Method::GET, "/v1/ops/usage", ops, None).await;
    assert_eq!(status, 200, "{body}");
    assert!(body["usage"]["projectedParticipantMinutes"].is_i64());
    stack.shutdown().await;
}
