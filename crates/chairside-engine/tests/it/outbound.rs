//! Outbound events end to end: a workflow run by the real runner over the fakes writes its events
//! with its steps, and the dispatcher delivers them to wiremock receivers, signed per Standard
//! Webhooks and verified with the reference library; retries keep the webhook-id; a crash
//! between the send and the record sends again with the same id; the bound gives up visibly.

use std::sync::Arc;
use std::time::Duration;

use chairside_engine::outbound::events::{EventType, OutboundEvent};
use chairside_engine::outbound::sign::WebhookSecret;
use chairside_engine::outbound::webhook::WebhookEndpoint;
use chairside_engine::outbound::{DispatchConfig, Dispatcher, SharedSubscriber, Subscriber};
use chairside_engine::store::SqliteStore;
use chairside_engine::store::prelude::*;
use financing_core::{Backoff, PracticeId};
use secrecy::SecretString;
use url::Url;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

use crate::fakes::Answer;
use crate::harness::World;

/// 32 made-up bytes.
const SECRET: &str = "whsec_dGVzdC1vbmx5LXNlY3JldC0wMTIzNDU2Nzg5YWJjZGVm";

fn endpoint(server: &MockServer) -> WebhookEndpoint {
    WebhookEndpoint::new(
        "billing",
        Url::parse(&format!("{}/hooks", server.uri())).unwrap(),
        WebhookSecret::parse(&SecretString::from(SECRET.to_owned())).unwrap(),
    )
    .unwrap()
}

fn dispatcher(w: &World, store: Arc<SqliteStore>, subs: Vec<SharedSubscriber>) -> Dispatcher {
    Dispatcher::new(
        store,
        subs,
        w.clock.clone(),
        DispatchConfig {
            owner: "test/outbound".into(),
            lease: Duration::from_secs(60),
            batch: 32,
            backoff: Backoff {
                base: Duration::from_secs(5),
                cap: Duration::from_secs(60),
                max_attempts: 3,
            },
        },
    )
}

fn header(r: &Request, name: &str) -> String {
    r.headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned()
}

/// Verifies a received request with the `standardwebhooks` reference library, at the request's
/// own timestamp (the library checks it against the system clock, so it is re-signed time-free:
/// the library signs the same id, timestamp and body, and the signatures must be equal).
fn verified_by_reference_library(r: &Request) -> bool {
    let wh = standardwebhooks::Webhook::new(SECRET).unwrap();
    let ts: i64 = header(r, "webhook-timestamp").parse().unwrap();
    let expected = wh.sign(&header(r, "webhook-id"), ts, &r.body).unwrap();
    expected == header(r, "webhook-signature")
}

/// A wiremock endpoint that answers 200 to every POST.
async fn accepting_endpoint() -> MockServer {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200))
        .mount(&server)
        .await;
    server
}

/// A financed plan run to its end by the real runner.
async fn run_financed(w: &World) -> chairside_workflow::WorkflowId {
    let id = w.accept(1, 150_000, 50_000);
    w.carecredit.on_status(Answer::Approve);
    let runner = w.runner("runner-1").await;
    w.settle(&runner).await;
    id
}

/// A financed plan run to its end by the real runner, the subscriber's cursor started first (as
/// the composition root does).
async fn financed_run(w: &World, d: &Dispatcher) -> chairside_workflow::WorkflowId {
    d.start_cursors().await.unwrap();
    run_financed(w).await
}

#[tokio::test]
async fn a_financed_plans_events_arrive_signed_and_in_order_with_ids_and_states_only() {
    // Arrange
    let w = World::new();
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/hooks"))
        .respond_with(ResponseTemplate::new(204))
        .mount(&server)
        .await;
    let store = w.store().await;
    let d = dispatcher(&w, store.clone(), vec![Arc::new(endpoint(&server))]);
    let id = financed_run(&w, &d).await;

    // Act
    let round = d.tick().await.unwrap();

    // Assert
    let received = server.received_requests().await.unwrap();
    let types: Vec<String> = received
        .iter()
        .map(|r| {
            OutboundEvent::from_payload(&r.body)
                .unwrap()
                .kind
                .label()
                .to_owned()
        })
        .collect();
    assert_eq!(
        types,
        [
            "workflow.started",
            "financing.decided",
            "summary.sent",
            // The plan has no treatment date: the lender charge is a settlement task for staff.
            "workflow.needs_staff",
            "note.written"
        ]
    );
    assert_eq!(round.delivered, 5);
    for r in &received {
        assert!(verified_by_reference_library(r), "signature verifies");
        let event = OutboundEvent::from_payload(&r.body).unwrap();
        assert_eq!(header(r, "webhook-id"), event.id);
        assert_eq!(event.data.workflow_id, id.as_str());
        let body = String::from_utf8(r.body.clone()).unwrap();
        for phi in [
            "Testa",
            "Patient1",
            "555",
            "example.test",
            "D2740",
            "80000",
            "800.00",
        ] {
            assert!(!body.contains(phi), "{phi} in {body}");
        }
    }
    let financed = OutboundEvent::from_payload(&received[1].body).unwrap();
    assert_eq!(financed.data.lender.as_deref(), Some("carecredit"));
    let log = store.deliveries(None, None, 100).await.unwrap();
    assert_eq!(log.len(), 5);
    assert!(
        log.iter()
            .all(|d| d.status == "delivered" && d.attempts == 1)
    );

    // A second round sends nothing again.
    assert_eq!(d.tick().await.unwrap().attempted, 0);
    assert_eq!(server.received_requests().await.unwrap().len(), 5);
}

#[tokio::test]
async fn a_500_then_a_200_delivers_once_with_the_same_webhook_id() {
    // Arrange: the receiver fails the first request, then takes everything.
    let w = World::new();
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(500))
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200))
        .with_priority(2)
        .mount(&server)
        .await;
    let store = w.store().await;
    let sub = endpoint(&server).types([EventType::FinancingDecided]);
    let d = dispatcher(&w, store.clone(), vec![Arc::new(sub)]);
    financed_run(&w, &d).await;

    // Act: the first attempt fails; nothing is due until the backoff passes.
    let first = d.tick().await.unwrap();
    let early = d.tick().await.unwrap();
    w.clock.advance(Duration::from_secs(6));
    let second = d.tick().await.unwrap();

    // Assert
    assert_eq!((first.attempted, first.delivered), (1, 0));
    assert_eq!(early.attempted, 0, "not before the backoff");
    assert_eq!((second.attempted, second.delivered), (1, 1));
    let received = server.received_requests().await.unwrap();
    assert_eq!(received.len(), 2);
    assert_eq!(
        header(&received[0], "webhook-id"),
        header(&received[1], "webhook-id")
    );
    assert_eq!(received[0].body, received[1].body, "the identical body");
    assert!(received.iter().all(verified_by_reference_library));
    let log = store.deliveries(None, None, 10).await.unwrap();
    assert_eq!(log.len(), 1);
    assert_eq!((log[0].status.as_str(), log[0].attempts), ("delivered", 2));
    w.clock.advance(Duration::from_secs(3600));
    assert_eq!(d.tick().await.unwrap().attempted, 0, "delivered once");
}

#[tokio::test]
async fn a_crash_between_the_send_and_its_record_sends_again_with_the_same_id() {
    // Arrange
    let w = World::new();
    let server = accepting_endpoint().await;
    let store = w.store().await;
    let sub = Arc::new(endpoint(&server).types([EventType::NoteWritten]));
    let d = dispatcher(&w, store.clone(), vec![sub.clone()]);
    financed_run(&w, &d).await;
    d.fan_out().await.unwrap();

    // Act: a dispatcher claims the delivery and sends it, then dies before recording anything.
    let jobs = store
        .claim_deliveries("doomed", w.clock.now_utc(), Duration::from_secs(60), 10)
        .await
        .unwrap();
    assert_eq!(jobs.len(), 1);
    sub.deliver(&jobs[0].event, jobs[0].attempt, w.clock.now_utc())
        .await
        .unwrap();
    drop(jobs);
    // The lease holds it meanwhile; once it runs out another dispatcher takes it over.
    let during = d.tick().await.unwrap();
    w.clock.advance(Duration::from_secs(61));
    let after = d.tick().await.unwrap();

    // Assert
    assert_eq!(during.attempted, 0, "the doomed claim's lease still holds");
    assert_eq!((after.attempted, after.delivered), (1, 1));
    let received = server.received_requests().await.unwrap();
    assert_eq!(
        received.len(),
        2,
        "sent again: receivers deduplicate on the id"
    );
    assert_eq!(
        header(&received[0], "webhook-id"),
        header(&received[1], "webhook-id")
    );
    let log = store.deliveries(None, None, 10).await.unwrap();
    assert_eq!((log[0].status.as_str(), log[0].attempts), ("delivered", 2));
}

#[tokio::test]
async fn an_endpoint_that_keeps_failing_is_given_up_after_the_bound_and_staff_can_requeue_it() {
    // Arrange
    let w = World::new();
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(503).insert_header("retry-after", "20"))
        .mount(&server)
        .await;
    let store = w.store().await;
    let sub = endpoint(&server).types([EventType::WorkflowStarted]);
    let d = dispatcher(&w, store.clone(), vec![Arc::new(sub)]);
    financed_run(&w, &d).await;

    // Act: three attempts (the bound), each after the server's Retry-After.
    let mut attempts = 0;
    for _ in 0..10 {
        attempts += d.tick().await.unwrap().attempted;
        w.clock.advance(Duration::from_secs(21));
    }

    // Assert
    assert_eq!(attempts, 3);
    assert_eq!(server.received_requests().await.unwrap().len(), 3);
    let failed = store.deliveries(None, Some("failed"), 10).await.unwrap();
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0].last_status, Some(503));
    assert_eq!(store.delivery_counts().await.unwrap().failed, 1);

    // Staff queue it again: it is attempted once more.
    assert!(
        store
            .requeue_delivery(failed[0].id, w.clock.now_utc())
            .await
            .unwrap()
    );
    assert_eq!(d.tick().await.unwrap().attempted, 1);
}

#[tokio::test]
async fn a_410_gives_up_at_once_and_a_refused_connection_is_retried() {
    // Arrange
    let w = World::new();
    let gone = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(410))
        .mount(&gone)
        .await;
    let store = w.store().await;
    let closed = WebhookEndpoint::new(
        "closed",
        Url::parse("http://127.0.0.1:9/hooks").unwrap(),
        WebhookSecret::parse(&SecretString::from(SECRET.to_owned())).unwrap(),
    )
    .unwrap()
    .types([EventType::WorkflowStarted]);
    let d = dispatcher(
        &w,
        store.clone(),
        vec![
            Arc::new(endpoint(&gone).types([EventType::WorkflowStarted])),
            Arc::new(closed),
        ],
    );
    financed_run(&w, &d).await;

    // Act
    d.tick().await.unwrap();

    // Assert
    let log = store.deliveries(None, None, 10).await.unwrap();
    let of = |s: &str| log.iter().find(|d| d.subscriber == s).unwrap();
    assert_eq!(of("webhook:billing").status, "failed");
    assert_eq!(of("webhook:billing").last_status, Some(410));
    assert_eq!(of("webhook:closed").status, "pending");
    assert_eq!(
        of("webhook:closed").last_error.as_deref(),
        Some("could not connect")
    );
}

#[tokio::test]
async fn a_new_subscriber_is_not_sent_the_history_and_practices_filter_events() {
    // Arrange: a plan runs before the subscriber exists.
    let w = World::new();
    let server = accepting_endpoint().await;
    let store = w.store().await;
    let id = run_financed(&w).await;
    let other_practice = endpoint(&server).practices([PracticeId::new("elsewhere")]);
    let d = dispatcher(&w, store.clone(), vec![Arc::new(other_practice)]);

    // Act
    let round = d.tick().await.unwrap();

    // Assert: the events exist, yet nothing is queued.
    // Started, decided, summary sent, the settlement task (no treatment date), note written.
    assert_eq!(store.outbound_events(id.as_str()).await.unwrap().len(), 5);
    assert_eq!((round.queued, round.attempted), (0, 0));
    assert!(server.received_requests().await.unwrap().is_empty());
}

#[tokio::test]
async fn a_subscriber_whose_cursor_started_with_the_stack_is_sent_what_came_before_its_first_round()
{
    // Arrange: the cursor starts when the stack is built (nothing written yet); the plan runs
    // before the dispatcher's first round, as a plan polled in the first milliseconds does.
    let w = World::new();
    let server = accepting_endpoint().await;
    let store = w.store().await;
    let d = dispatcher(&w, store.clone(), vec![Arc::new(endpoint(&server))]);
    d.start_cursors().await.unwrap();
    let id = run_financed(&w).await;
    // Started again (another process built on the same store): an existing cursor stays.
    d.start_cursors().await.unwrap();

    // Act
    let round = d.tick().await.unwrap();

    // Assert: every event of the plan, none skipped.
    let events = store.outbound_events(id.as_str()).await.unwrap();
    assert_eq!(events.len(), 5);
    assert_eq!((round.queued, round.delivered), (5, 5));
    assert_eq!(server.received_requests().await.unwrap().len(), 5);
}

mod crm {
    //! The CRM subscriber over a wiremock HubSpot, fed by the real runner's events.

    use std::sync::Arc;

    use chairside_engine::outbound::crm::{CrmStages, HubSpotSubscriber};
    use chairside_engine::store::Store;
    use financing_core::{
        AmountLimits, LenderId, LenderSlot, PartialApprovalRule, Waterfall, WaterfallPolicy,
    };
    use hubspot_client::StageId;
    use secrecy::SecretString;
    use serde_json::{Value, json};
    use url::Url;
    use wiremock::matchers::{method, path};
    use wiremock::{Mock, MockServer, ResponseTemplate};

    use super::dispatcher;
    use crate::fakes::Answer;
    use crate::harness::World;

    fn stages() -> CrmStages {
        CrmStages {
            not_converted: StageId::new("closedlost"),
            applying: StageId::new("appointmentscheduled"),
            financed: StageId::new("contractsent"),
            declined: StageId::new("1001"),
            paid: StageId::new("closedwon"),
        }
    }

    async fn hubspot() -> MockServer {
        let server = MockServer::start().await;
        let batch = |id: &str| {
            ResponseTemplate::new(200)
                .set_body_json(json!({"status": "COMPLETE", "results": [{"id": id}]}))
        };
        Mock::given(method("POST"))
            .and(path("/crm/v3/objects/contacts/batch/upsert"))
            .respond_with(batch("501"))
            .mount(&server)
            .await;
        Mock::given(method("POST"))
            .and(path("/crm/v3/objects/deals/batch/upsert"))
            .respond_with(batch("901"))
            .mount(&server)
            .await;
        Mock::given(method("PUT"))
            .respond_with(ResponseTemplate::new(200).set_body_json(json!({})))
            .mount(&server)
            .await;
        Mock::given(method("POST"))
            .and(path("/crm/v3/objects/tasks/search"))
            .respond_with(
                ResponseTemplate::new(200).set_body_json(json!({"total": 0, "results": []})),
            )
            .mount(&server)
            .await;
        Mock::given(method("POST"))
            .and(path("/crm/v3/objects/tasks"))
            .respond_with(ResponseTemplate::new(201).set_body_json(json!({"id": "7001"})))
            .mount(&server)
            .await;
        server
    }

    async fn subscriber(w: &World, server: &MockServer, amounts: bool) -> HubSpotSubscriber {
        let client = hubspot_client::Client::builder(
            Url::parse(&format!("{}/", server.uri())).unwrap(),
            SecretString::from("pat-test-token".to_owned()),
        )
        .build()
        .unwrap();
        let store: Arc<dyn Store> = w.store().await;
        HubSpotSubscriber::new(client, store, stages()).amounts(amounts)
    }

    async fn bodies(server: &MockServer, p: &str) -> Vec<Value> {
        server
            .received_requests()
            .await
            .unwrap()
            .iter()
            .filter(|r| r.url.path() == p)
            .map(|r| serde_json::from_slice(&r.body).unwrap())
            .collect()
    }

    #[tokio::test]
    async fn a_financed_plan_ends_as_a_financed_deal_on_the_patients_contact_without_clinical_data()
    {
        // Arrange
        let w = World::new();
        let server = hubspot().await;
        let store = w.store().await;
        let sub = subscriber(&w, &server, false).await;
        let d = dispatcher(&w, store.clone(), vec![Arc::new(sub)]);
        d.fan_out().await.unwrap();
        let id = w.accept(1, 150_000, 50_000);
        w.carecredit.on_status(Answer::Approve);
        let runner = w.runner("runner-1").await;
        w.settle(&runner).await;

        // Act
        let round = d.tick().await.unwrap();

        // Assert: started and financed were delivered; the deal's last stage is financed.
        assert_eq!(round.delivered, 2, "{round:?}");
        let contacts = bodies(&server, "/crm/v3/objects/contacts/batch/upsert").await;
        assert_eq!(
            contacts[0]["inputs"][0]["id"],
            "testa.patient1@example.test"
        );
        assert_eq!(contacts[0]["inputs"][0]["properties"]["firstname"], "Testa");
        let deals = bodies(&server, "/crm/v3/objects/deals/batch/upsert").await;
        assert!(deals.iter().all(|d| d["inputs"][0]["id"] == id.as_str()));
        assert!(
            deals
                .iter()
                .all(|d| d["inputs"][0]["properties"]["dealstage"] == "contractsent"),
            "the workflow's current truth, whatever the event: {deals:?}"
        );
        for body in server.received_requests().await.unwrap() {
            let text = String::from_utf8(body.body.clone()).unwrap();
            assert!(!text.contains("D2740"), "a procedure code crossed: {text}");
            assert!(!text.contains("amount"), "an amount crossed: {text}");
        }
        assert!(bodies(&server, "/crm/v3/objects/tasks").await.is_empty());
    }

    #[tokio::test]
    async fn a_declined_plan_is_a_declined_deal_with_one_follow_up_task_and_amounts_when_turned_on()
    {
        // Arrange: no in-house fallback; both lenders decline.
        let mut w = World::new();
        let slot = |id: &str| LenderSlot {
            lender: LenderId::new(id),
            limits: AmountLimits::NONE,
        };
        w.config.waterfall = Waterfall::new(
            vec![slot("carecredit"), slot("sunbit")],
            WaterfallPolicy {
                on_partial: PartialApprovalRule::StopForStaff,
                in_house_fallback: false,
            },
        );
        w.config.in_house = None;
        let server = hubspot().await;
        let store = w.store().await;
        let sub = subscriber(&w, &server, true).await;
        let d = dispatcher(&w, store.clone(), vec![Arc::new(sub)]);
        d.fan_out().await.unwrap();
        w.accept(1, 150_000, 50_000);
        w.carecredit.on_start(Answer::Decline);
        w.sunbit.on_start(Answer::Decline);
        let runner = w.runner("runner-1").await;
        w.settle(&runner).await;

        // Act: delivered, then a second round after a retry window sends nothing more.
        d.tick().await.unwrap();
        w.clock.advance(std::time::Duration::from_secs(3600));
        d.tick().await.unwrap();

        // Assert
        let deals = bodies(&server, "/crm/v3/objects/deals/batch/upsert").await;
        let last = &deals.last().unwrap()["inputs"][0]["properties"];
        assert_eq!(last["dealstage"], "1001", "{deals:?}");
        assert_eq!(last["amount"], "800.00", "the amount asked of lenders");
        let tasks = bodies(&server, "/crm/v3/objects/tasks").await;
        assert_eq!(tasks.len(), 1, "one follow-up");
        let subject = tasks[0]["properties"]["hs_task_subject"].as_str().unwrap();
        assert!(
            subject.starts_with("Follow up: financing declined [chairside evt_"),
            "{subject}"
        );
        assert_eq!(tasks[0]["associations"][0]["to"]["id"], "501");
    }
}
