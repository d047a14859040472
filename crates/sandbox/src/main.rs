//! `sandbox`: runs every stand-in stand-alone on loopback and prints where they listen and the
//! (made-up) credentials they expect, for poking at them with curl or pointing a tool at them.

use std::io::Write as _;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use clap::Parser;
use sandbox::{Persona, Pms, Ports, Sandbox, SandboxConfig};
use secrecy::ExposeSecret;
use url::Url;

/// Local stand-ins for Stripe, Twilio, SMTP, Dentrix Ascend, NexHealth, Open Dental, CareCredit
/// and Sunbit. Stops on Ctrl-C.
#[derive(Debug, Parser)]
#[command(name = "sandbox", version)]
struct Args {
    /// Seed for every random choice (fault draws, ids).
    #[arg(long, default_value_t = 7)]
    seed: u64,
    /// First of eight consecutive ports (Stripe, Twilio, SMTP, Dentrix, NexHealth, Open Dental,
    /// CareCredit, Sunbit); 0 picks free ports.
    #[arg(long, default_value_t = 0)]
    base_port: u16,
    /// Where Stripe events are POSTed.
    #[arg(long, env = "SANDBOX_STRIPE_WEBHOOK_URL")]
    stripe_webhook_url: Option<Url>,
    /// Where Sunbit events are POSTed.
    #[arg(long, env = "SANDBOX_SUNBIT_WEBHOOK_URL")]
    sunbit_webhook_url: Option<Url>,
    /// Where inbound texts (patient replies) are POSTed.
    #[arg(long, env = "SANDBOX_TWILIO_INBOUND_URL")]
    twilio_inbound_url: Option<Url>,
    /// Append every Stripe request to this JSON Lines file (conformance.py's format).
    #[arg(long)]
    stripe_request_log: Option<PathBuf>,
    /// Bill the next installment of every active schedule this often (seconds).
    #[arg(long)]
    advance_every: Option<u64>,
    /// Seed one patient per persona in this practice system (dentrix, nexhealth, opendental)
    /// and accept their plans.
    #[arg(long)]
    seed_personas: Option<String>,
    /// Print the addresses and credentials as one JSON object instead of text.
    #[arg(long)]
    json: bool,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let mut config = SandboxConfig {
        seed: args.seed,
        ..SandboxConfig::default()
    };
    if args.base_port != 0 {
        config.ports = Ports::from_base(args.base_port);
    }
    config.stripe.webhook_url = args.stripe_webhook_url;
    config.stripe.request_log = args.stripe_request_log;
    config.stripe.advance_every = args.advance_every.map(Duration::from_secs);
    config.sunbit.webhook_url = args.sunbit_webhook_url;
    config.twilio.inbound_url = args.twilio_inbound_url;
    let pms = match args.seed_personas.as_deref() {
        None => None,
        Some("dentrix") => Some(Pms::Dentrix),
        Some("nexhealth") => Some(Pms::NexHealth),
        Some("opendental") => Some(Pms::OpenDental),
        Some(_) => anyhow::bail!("--seed-personas takes dentrix, nexhealth or opendental"),
    };

    let sb = Sandbox::start(config)
        .await
        .context("starting the sandbox")?;
    let mut seeded = Vec::new();
    if let Some(pms) = pms {
        for persona in Persona::ALL {
            let case = sb.seed_persona(pms, persona)?;
            sb.accept_plan(case.plan.key)?;
            seeded.push(case);
        }
    }

    let u = sb.urls();
    let c = sb.config();
    let mut out = std::io::stdout().lock();
    if args.json {
        let doc = serde_json::json!({
            "stripe": {"url": u.stripe, "secret_key": c.stripe.secret_key.expose_secret(),
                "webhook_secrets": c.stripe.webhook_secrets.iter().map(|s| s.expose_secret().to_owned()).collect::<Vec<_>>()},
            "twilio": {"url": u.twilio, "account_sid": c.twilio.account_sid, "auth_token": c.twilio.auth_token.expose_secret()},
            "smtp": {"host": u.smtp.ip().to_string(), "port": u.smtp.port()},
            "dentrix": {"url": u.dentrix, "client_id": c.dentrix.client_id,
                "client_secret": c.dentrix.client_secret.expose_secret(), "organization_id": c.dentrix.organization_id},
            "nexhealth": {"url": u.nexhealth, "api_key": c.nexhealth.api_key.expose_secret(),
                "subdomain": c.nexhealth.subdomain, "location_id": c.nexhealth.location_id},
            "opendental": {"url": u.opendental, "developer_key": c.opendental.developer_key.expose_secret(),
                "customer_key": c.opendental.customer_key.expose_secret()},
            "carecredit": {"url": u.carecredit, "client_id": c.carecredit.client_id,
                "client_secret": c.carecredit.client_secret.expose_secret()},
            "sunbit": {"url": u.sunbit, "key": c.sunbit.api_key, "secret": c.sunbit.api_secret.expose_secret(),
                "webhook_secret": c.sunbit.webhook_secret.expose_secret()},
            "seeded": seeded,
        });
        writeln!(out, "{doc}")?;
    } else {
        // Made-up credentials, printed on purpose: they are what a client must be configured
        // with to talk to this sandbox.
        writeln!(
            out,
            "sandbox running (Ctrl-C stops it); made-up credentials:"
        )?;
        writeln!(
            out,
            "  stripe      {}  key={} whsec={}",
            u.stripe,
            c.stripe.secret_key.expose_secret(),
            c.stripe
                .webhook_secrets
                .first()
                .map_or("", |s| s.expose_secret())
        )?;
        writeln!(
            out,
            "  twilio      {}  account={} token={}",
            u.twilio,
            c.twilio.account_sid,
            c.twilio.auth_token.expose_secret()
        )?;
        writeln!(out, "  smtp        {}  (plain, no auth)", u.smtp)?;
        writeln!(
            out,
            "  dentrix     {}  client={} secret={} org={}",
            u.dentrix,
            c.dentrix.client_id,
            c.dentrix.client_secret.expose_secret(),
            c.dentrix.organization_id
        )?;
        writeln!(
            out,
            "  nexhealth   {}  key={} subdomain={} location={}",
            u.nexhealth,
            c.nexhealth.api_key.expose_secret(),
            c.nexhealth.subdomain,
            c.nexhealth.location_id
        )?;
        writeln!(
            out,
            "  opendental  {}  ODFHIR {}/{}",
            u.opendental,
            c.opendental.developer_key.expose_secret(),
            c.opendental.customer_key.expose_secret()
        )?;
        writeln!(
            out,
            "  carecredit  {}  client={} secret={}",
            u.carecredit,
            c.carecredit.client_id,
            c.carecredit.client_secret.expose_secret()
        )?;
        writeln!(
            out,
            "  sunbit      {}  key={} secret={} webhook-secret={}",
            u.sunbit,
            c.sunbit.api_key,
            c.sunbit.api_secret.expose_secret(),
            c.sunbit.webhook_secret.expose_secret()
        )?;
        for case in &seeded {
            writeln!(
                out,
                "  seeded {:<30} patient {} plan {} (accepted)",
                case.patient.persona.name(),
                case.patient.pms_id,
                case.plan.pms_id
            )?;
        }
    }
    out.flush()?;
    drop(out);
    tokio::signal::ctrl_c().await?;
    sb.stop().await;
    Ok(())
}
