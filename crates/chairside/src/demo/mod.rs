//! `chairside demo`: the whole chain on loopback, every persona to its end, and a table of what
//! happened. What a newcomer runs first.

pub mod world;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use financing_core::Money;
use sandbox::SandboxConfig;

use self::world::{Expected, World, WorldOptions};
use chairside_workflow::WorkflowState;

/// Options of `chairside demo`.
#[derive(Debug, Clone, clap::Args)]
pub struct DemoArgs {
    /// Directory for the demo's SQLite file (a temporary directory when omitted).
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// Keep running after the table, so you can look around (dashboard, patient pages).
    #[arg(long)]
    pub serve: bool,
    /// Give up waiting for the workflows after this many seconds.
    #[arg(long, default_value_t = 60)]
    pub timeout_secs: u64,
    /// Run on PostgreSQL instead of SQLite: the URL of a server and a role that may create
    /// databases (`postgres://user@host:5432/postgres`). The demo runs in a fresh database
    /// created there (`chairside_demo_*`) and drops it when it ends.
    #[arg(long, value_name = "URL", env = "CHAIRSIDE_DEMO_DATABASE_URL")]
    pub database_url: Option<String>,
}

/// One line of the table.
#[derive(Debug, Clone)]
pub struct Row {
    /// Practice and plan.
    pub plan: String,
    /// The persona.
    pub persona: String,
    /// Where it ended.
    pub path: String,
    /// Financed by a lender.
    pub financed: String,
    /// Paid to the practice through Stripe (deposit + in-house).
    pub self_pay: String,
    /// Stripe objects.
    pub stripe: String,
    /// Outcome ledger notes with the workflow's marker in the practice system (payment notes
    /// are not counted: they follow the money).
    pub notes: usize,
    /// Operatory-to-ledger time.
    pub o2l: Option<Duration>,
    /// Whether it ended where the persona says.
    pub ok: bool,
    /// What was expected.
    pub expected: String,
    /// Each lender asked and its answer, in order.
    pub lenders: String,
    /// Texts the sandbox's Twilio recorded to the patient's mobile (the patient consented to
    /// texts, or none go out).
    pub texts: usize,
}

fn self_pay(state: &WorkflowState) -> Money {
    let Some(r) = &state.result else {
        return Money::usd(0);
    };
    let in_house = r.in_house.as_ref().map_or(Money::usd(0), |o| o.total);
    r.deposit.checked_add(in_house).unwrap_or(r.deposit)
}

/// Builds the table rows and checks the sandbox's invariants. Returns rows and the list of
/// invariant violations (empty when all hold).
///
/// # Errors
/// Store errors.
pub async fn report(world: &World) -> anyhow::Result<(Vec<Row>, Vec<String>)> {
    let mut rows = Vec::new();
    let mut problems = Vec::new();
    let link_only = world
        .link_only_cases
        .iter()
        .map(|c| (c, Some(Expected::Done(world::CHERRY_APPROVED))));
    for (case, expected_here) in world.cases.iter().map(|c| (c, None)).chain(link_only) {
        let expected = expected_here.unwrap_or_else(|| Expected::of(case.persona));
        // The Cherry case: declined by both lenders with an API, approved in Cherry's portal.
        let persona_name: String = match expected_here {
            Some(_) => "link_only_cherry".into(),
            None => case.persona.name().into(),
        };
        let state = world.workflow_of(case).await?;
        let row = match state {
            None => Row {
                plan: format!("{}/{}", case.practice, case.seeded.plan.pms_id),
                persona: persona_name.clone(),
                path: "not detected".into(),
                financed: "-".into(),
                self_pay: "-".into(),
                stripe: "-".into(),
                notes: 0,
                o2l: None,
                ok: false,
                expected: expected.describe(),
                lenders: String::new(),
                texts: 0,
            },
            Some(s) => {
                let notes = outcome_notes(world, s.id.as_str());
                // The sandbox Twilio's own record of what reached the patient's phone.
                let texts = match world.store.patient(&case.practice, &s.patient_id).await? {
                    Some(contact) => contact
                        .mobile_phone
                        .as_deref()
                        .map_or(0, |phone| world.sandbox.twilio().messages_to(phone).len()),
                    None => 0,
                };
                let path = match (&s.staff_task, &s.result) {
                    (Some(t), _) if s.status == chairside_workflow::Status::WaitingOnStaff => {
                        format!("staff: {}", t.kind.label())
                    }
                    (_, Some(r)) => s.outcome_label().unwrap_or_else(|| r.path.clone()),
                    _ => s.stage_label(),
                };
                let financed = s
                    .result
                    .as_ref()
                    .and_then(|r| r.financed.clone())
                    .map_or_else(|| "-".into(), |(l, m)| format!("{m} {}", s.lender_name(&l)));
                let st = &s.stripe;
                // Card on file: the saved card, and what its deposit charge came to.
                let card = st
                    .card_charge(chairside_workflow::machine::DEPOSIT)
                    .map(|c| match &c.state {
                        chairside_workflow::CardChargeState::Paid { payment_intent } => {
                            format!("card charged {payment_intent}")
                        }
                        chairside_workflow::CardChargeState::Failed { reason, .. } => {
                            format!("card declined ({reason})")
                        }
                        chairside_workflow::CardChargeState::Charging => "card charging".into(),
                    })
                    .or_else(|| {
                        st.card_on_file.then(|| {
                            if st.payment_method.is_some() {
                                "card saved".into()
                            } else {
                                "card link sent".into()
                            }
                        })
                    });
                // A deposit paid through the patient page's pay link (Stripe Checkout).
                let paid = (st.deposit_paid && card.is_none()).then_some("deposit paid");
                let stripe: Vec<&str> = [
                    paid,
                    st.customer_id.as_deref(),
                    st.checkout_session_id.as_deref(),
                    st.schedule_id.as_deref(),
                    card.as_deref(),
                ]
                .into_iter()
                .flatten()
                .collect();
                Row {
                    plan: format!("{}/{}", case.practice, case.seeded.plan.pms_id),
                    persona: persona_name.clone(),
                    path,
                    financed,
                    self_pay: self_pay(&s).to_string(),
                    stripe: if stripe.is_empty() {
                        "-".into()
                    } else {
                        stripe.join(" ")
                    },
                    notes,
                    o2l: s.operatory_to_ledger().and_then(|d| d.to_std().ok()),
                    ok: expected.matches(&s) && notes == 1,
                    expected: expected.describe(),
                    lenders: s
                        .attempts
                        .iter()
                        .map(|a| format!("{} {}", s.lender_name(&a.lender), a.outcome.label()))
                        .collect::<Vec<_>>()
                        .join(", "),
                    texts,
                }
            }
        };
        rows.push(row);
    }
    for case in &world.intakes {
        rows.push(intake_row(world, case).await?);
    }
    let stripe = world.sandbox.stripe();
    for (patient, n) in stripe.customers_per_patient() {
        if n > 1 {
            problems.push(format!("{n} Stripe customers for one patient ({patient})"));
        }
    }
    for (workflow, n) in stripe.schedules_per_workflow() {
        if n > 1 {
            problems.push(format!("{n} schedules for workflow {workflow}"));
        }
    }
    for (workflow, n) in stripe.checkout_sessions_per_workflow() {
        if n > 1 {
            problems.push(format!("{n} deposit links for workflow {workflow}"));
        }
    }
    for ((schedule, installment), n) in stripe.charges_per_installment() {
        if n > 1 {
            problems.push(format!(
                "installment {installment} of {schedule} charged {n} times"
            ));
        }
    }
    for v in world.sandbox.violations() {
        problems.push(format!("compliance: {v:?}"));
    }
    Ok((rows, problems))
}

/// The row of a new-patient intake: financed like any plan, and the patient created in the
/// practice system once (or, for Dentrix Ascend, a staff task and no record).
/// A workflow's outcome notes in the sandbox's ledger (one per workflow outcome); payment,
/// refund and settlement notes come and go with the money and are not counted.
fn outcome_notes(world: &World, workflow: &str) -> usize {
    world
        .sandbox
        .notes_containing(workflow)
        .iter()
        .filter(|n| {
            ["financing", "needs staff", "no financing"]
                .iter()
                .any(|h| n.text.contains(&format!("Chairside: {h}")))
        })
        .count()
}

async fn intake_row(world: &World, case: &world::IntakeCase) -> anyhow::Result<Row> {
    let records = world
        .sandbox
        .pms_patient_ids(case.pms, &case.patient.first_name, &case.patient.last_name)
        .len();
    let want_records = usize::from(case.creates_record);
    let plan = format!("{}/{}", case.practice, case.intake_id);
    let persona = if case.emailed {
        "new patient (link emailed)".to_owned()
    } else {
        "new patient (intake)".to_owned()
    };
    // The patient whose link Chairside emailed got it exactly once (the sandbox's SMTP sink).
    let link_emails = case.patient.email.as_deref().map_or(0, |address| {
        world
            .sandbox
            .smtp()
            .messages_to(address)
            .iter()
            .filter(|m| m.text.contains("/i/"))
            .count()
    });
    let emails_ok = !case.emailed || link_emails == 1;
    let Some(s) = world.intake_workflow(case).await? else {
        return Ok(Row {
            plan,
            persona,
            path: "not started".into(),
            financed: "-".into(),
            self_pay: "-".into(),
            stripe: "-".into(),
            notes: 0,
            o2l: None,
            ok: false,
            expected: case.expected.describe(),
            lenders: String::new(),
            texts: 0,
        });
    };
    let notes = outcome_notes(world, s.id.as_str());
    // The patient agreed to texts on the intake page: the sandbox Twilio's record of them.
    let texts = case
        .patient
        .mobile_phone
        .as_deref()
        .map_or(0, |phone| world.sandbox.twilio().messages_to(phone).len());
    let path = match (&s.staff_task, &s.result) {
        (Some(t), _) if s.status == chairside_workflow::Status::WaitingOnStaff => {
            format!("staff: {}", t.kind.label())
        }
        (_, Some(r)) => s.outcome_label().unwrap_or_else(|| r.path.clone()),
        _ => s.stage_label(),
    };
    let st = &s.stripe;
    let paid = st.deposit_paid.then_some("deposit paid");
    let stripe: Vec<&str> = [
        paid,
        st.customer_id.as_deref(),
        st.checkout_session_id.as_deref(),
    ]
    .into_iter()
    .flatten()
    .collect();
    Ok(Row {
        plan,
        persona,
        path: format!("{path}; {records} record(s) in {}", case.pms.name()),
        financed: s
            .result
            .as_ref()
            .and_then(|r| r.financed.clone())
            .map_or_else(|| "-".into(), |(l, m)| format!("{m} {}", s.lender_name(&l))),
        self_pay: self_pay(&s).to_string(),
        stripe: if stripe.is_empty() {
            "-".into()
        } else {
            stripe.join(" ")
        },
        notes,
        o2l: s.operatory_to_ledger().and_then(|d| d.to_std().ok()),
        ok: case.expected.matches(&s)
            && notes == want_records
            && records == want_records
            && emails_ok,
        expected: format!(
            "{}, {want_records} record(s) and {want_records} note(s)",
            case.expected.describe()
        ),
        lenders: s
            .attempts
            .iter()
            .map(|a| format!("{} {}", s.lender_name(&a.lender), a.outcome.label()))
            .collect::<Vec<_>>()
            .join(", "),
        texts,
    })
}

fn percentile(sorted: &[Duration], p: f64) -> Option<Duration> {
    if sorted.is_empty() {
        return None;
    }
    let idx = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted.get(idx).copied()
}

/// Prints the table and a summary; returns true when every row is as expected.
#[allow(clippy::print_stdout)] // the demo's output is the table
pub fn print(rows: &[Row], problems: &[String], elapsed: Duration) -> bool {
    let widths = [30, 28, 30, 24, 10, 40, 5, 5, 8];
    let header = [
        "plan",
        "persona",
        "path taken",
        "financed",
        "self-pay",
        "stripe",
        "notes",
        "texts",
        "o2l",
    ];
    let line = |cells: [&str; 9]| {
        let mut out = String::new();
        for (cell, w) in cells.iter().zip(widths) {
            let cell: String = cell.chars().take(w).collect();
            out.push_str(&format!("{cell:<w$} "));
        }
        out.trim_end().to_owned()
    };
    println!("{}", line(header));
    println!(
        "{}",
        "-".repeat(widths.iter().sum::<usize>() + widths.len())
    );
    for r in rows {
        let o2l = r
            .o2l
            .map_or_else(|| "-".into(), |d| format!("{:.2}s", d.as_secs_f64()));
        let mark = if r.ok {
            String::new()
        } else {
            format!("  <- expected {}", r.expected)
        };
        println!(
            "{}{mark}",
            line([
                &r.plan,
                &r.persona,
                &r.path,
                &r.financed,
                &r.self_pay,
                &r.stripe,
                &r.notes.to_string(),
                &r.texts.to_string(),
                &o2l
            ])
        );
    }
    let mut times: Vec<Duration> = rows.iter().filter_map(|r| r.o2l).collect();
    times.sort();
    let ok = rows.iter().filter(|r| r.ok).count();
    let mut by_path: BTreeMap<&str, usize> = BTreeMap::new();
    for r in rows {
        *by_path.entry(r.path.as_str()).or_default() += 1;
    }
    println!();
    for p in problems {
        println!("invariant broken: {p}");
    }
    let fmt =
        |d: Option<Duration>| d.map_or_else(|| "-".into(), |d| format!("{:.2}s", d.as_secs_f64()));
    println!(
        "{ok}/{} workflows ended where their persona says; {} invariant problems; operatory-to-ledger p50 {} p99 {}; {:.1}s in all",
        rows.len(),
        problems.len(),
        fmt(percentile(&times, 0.5)),
        fmt(percentile(&times, 0.99)),
        elapsed.as_secs_f64()
    );
    ok == rows.len() && problems.is_empty()
}

/// Keeps the demo world running so a person can look around, until Ctrl-C.
#[allow(clippy::print_stdout)] // where to look is the output
async fn serve(world: &World) -> anyhow::Result<()> {
    let options = WorldOptions::default();
    let links = chairside_engine::links::PatientLinks::new(
        world.http_base.clone(),
        options.link_key,
        Duration::from_secs(7 * 86_400),
    );
    println!();
    println!("Serving until Ctrl-C.");
    println!(
        "  Front-desk dashboard: {}staff  (password {})",
        world.http_base,
        world::STAFF_PASSWORD
    );
    for (user, practice) in &world.staff {
        println!("    user {user:<8} {practice}");
    }
    println!("  Patient pages:");
    for case in world.cases.iter().take(4) {
        if let Some(state) = world.workflow_of(case).await? {
            let generation = world.store.link_generation(&state.id).await?;
            println!(
                "    {:<28} {}",
                case.persona.name(),
                links.link(&state.id, generation, chrono::Utc::now())
            );
        }
    }
    println!("  Stripe stand-in: {}", world.sandbox.urls().stripe);
    tokio::signal::ctrl_c()
        .await
        .context("waiting for Ctrl-C")?;
    Ok(())
}

/// Runs the demo. Returns the process exit code: 0 only if every workflow ended where its persona
/// says and every invariant held.
///
/// # Errors
/// The sandbox, the store or the runner failed to start.
pub async fn run(args: DemoArgs) -> anyhow::Result<i32> {
    let started = Instant::now();
    let temp;
    let dir = match &args.dir {
        Some(d) => {
            std::fs::create_dir_all(d).with_context(|| format!("creating {}", d.display()))?;
            d.clone()
        }
        None => {
            temp = tempfile::tempdir().context("temporary directory")?;
            temp.path().to_path_buf()
        }
    };
    // A fresh database on the PostgreSQL server, when one is given.
    let postgres = match &args.database_url {
        Some(admin) => {
            let name = format!("chairside_demo_{}", std::process::id());
            let url = chairside_engine::store::PostgresStore::create_database(admin, &name)
                .await
                .context("creating the demo's database on --database-url")?;
            Some((admin.clone(), name, url))
        }
        None => None,
    };
    let options = WorldOptions {
        sandbox: SandboxConfig::default(),
        postgres: postgres
            .as_ref()
            .map(|(_, _, url)| secrecy::SecretString::from(url.clone())),
        ..WorldOptions::default()
    };
    let outcome = run_world(&args, &dir, options, started).await;
    if let Some((admin, name, _)) = &postgres
        && let Err(e) = chairside_engine::store::PostgresStore::drop_database(admin, name).await
    {
        tracing::warn!(database = %name, error = %e, "could not drop the demo's database");
    }
    outcome
}

/// What each seeded case's collection came to after financing: the lender charge on the
/// treatment date, the saved card's charges, the installments on the card. One line per case
/// that has any (`plan: ...`).
///
/// # Errors
/// Store errors.
pub async fn collection(world: &World) -> anyhow::Result<Vec<(String, String)>> {
    use chairside_workflow::CardChargeState;
    let mut out = Vec::new();
    for case in &world.cases {
        let Some(s) = world.workflow_of(case).await? else {
            continue;
        };
        let mut parts = Vec::new();
        if let Some(settlement) = &s.settlement {
            let day = s.treatment_date.map_or_else(
                || "no treatment date".to_owned(),
                |d| format!("treatment {d}"),
            );
            parts.push(format!(
                "{day}: {}",
                settlement.label().replacen(
                    settlement.lender.as_str(),
                    &s.lender_name(&settlement.lender),
                    1
                )
            ));
        }
        for c in &s.stripe.card_charges {
            let what = match &c.state {
                CardChargeState::Paid { .. } => "charged to the saved card",
                CardChargeState::Failed { .. } => "declined on the saved card (pay link sent)",
                CardChargeState::Charging => "being charged to the saved card",
            };
            parts.push(format!("{} {} {what}", c.purpose, c.amount));
        }
        if s.stripe.schedule_card.is_some() {
            parts.push("installments charged to the saved card".into());
        }
        if !parts.is_empty() {
            out.push((
                format!("{}/{}", case.practice, case.seeded.plan.pms_id),
                parts.join("; "),
            ));
        }
    }
    Ok(out)
}

/// Prints [`collection`]'s lines under the table.
#[allow(clippy::print_stdout)] // the demo's output, under the table
pub fn print_collection(lines: &[(String, String)]) {
    if lines.is_empty() {
        return;
    }
    println!("\ncollection (lender charges on the treatment date, saved cards):");
    for (plan, what) in lines {
        println!("  {plan:<30} {what}");
    }
}

async fn run_world(
    args: &DemoArgs,
    dir: &std::path::Path,
    options: WorldOptions,
    started: Instant,
) -> anyhow::Result<i32> {
    let mut world = World::start(dir, options).await?;
    world.seed_demo()?;
    world.seed_intakes().await?;
    world.seed_link_only()?;
    world.seed_emailed_intake().await?;
    let settled = world.drive(Duration::from_secs(args.timeout_secs)).await?;
    if !settled {
        tracing::warn!("not every workflow settled before the timeout");
    }
    let (rows, problems) = report(&world).await?;
    let all_ok = print(&rows, &problems, started.elapsed());
    print_collection(&collection(&world).await?);
    if args.serve {
        serve(&world).await?;
    }
    world.stop().await;
    Ok(if all_ok { 0 } else { 1 })
}
