//! Embeds the Chairside engine with a plug-in lender and runs one accepted plan to its end
//! against the sandbox's stand-ins (Open Dental, Stripe, an SMTP sink).
//!
//! ```sh
//! cargo run -p chairside-examples --example embed_engine
//! ```
//!
//! See `docs/embedding.md`.

#![allow(clippy::print_stdout, reason = "an example prints what happened")]

use std::sync::Arc;
use std::time::Duration;

use chairside_examples::embedding::{Systems, build_engine, run_until_settled};
use chairside_examples::third_lender::AcmeLender;
use financing_core::{LenderId, Money};
use sandbox::{Persona, Pms, Sandbox, SandboxConfig};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // The sandbox stands in for the practice's systems; yours come from your own configuration.
    let sandbox = Sandbox::start(SandboxConfig::default()).await?;
    let case = sandbox.seed_persona(Pms::OpenDental, Persona::InstantApproval)?;
    sandbox.accept_plan(case.plan.key)?;

    let cfg = sandbox.config();
    let systems = Systems {
        opendental: sandbox.urls().opendental.clone(),
        opendental_developer_key: cfg.opendental.developer_key.clone(),
        opendental_customer_key: cfg.opendental.customer_key.clone(),
        stripe: sandbox.urls().stripe.clone(),
        stripe_key: cfg.stripe.secret_key.clone(),
        smtp: sandbox.urls().smtp,
        public_base_url: "http://127.0.0.1:8080/".parse()?,
    };
    let dir = tempfile::tempdir()?;
    let acme = Arc::new(AcmeLender::new(Money::usd(500_000)));
    let engine = build_engine(dir.path(), &systems, LenderId::new("acme"), acme).await?;

    for state in run_until_settled(&engine, Duration::from_secs(30)).await? {
        println!(
            "workflow {}: {} ({})",
            state.id,
            state.status.label(),
            state
                .result
                .as_ref()
                .map_or("no result", |r| r.path.as_str()),
        );
    }
    println!(
        "ledger notes written: {}, emails sent: {}",
        sandbox.ledger_notes().len(),
        sandbox.smtp().messages().len()
    );
    sandbox.stop().await;
    Ok(())
}
