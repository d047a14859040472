//! `sandbox`: runs every stand-in stand-alone and prints where they listen.

use std::io::Write as _;
use std::path::PathBuf;

use clap::Parser;
use sandbox::{Sandbox, SandboxConfig};

/// Local stand-ins for Stripe, Twilio, SMTP, Dentrix Ascend, NexHealth, Open Dental, CareCredit
/// and Sunbit.
#[derive(Debug, Parser)]
#[command(name = "sandbox", version)]
struct Args {
    /// Seed for every random choice.
    #[arg(long, default_value_t = 7)]
    seed: u64,
    /// First of eight consecutive ports (0: free ports).
    #[arg(long, default_value_t = 0)]
    base_port: u16,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let mut config = SandboxConfig {
        seed: args.seed,
        ..SandboxConfig::default()
    };
    if args.base_port != 0 {
        config.ports = sandbox::Ports::from_base(args.base_port);
    }
    let _ = PathBuf::new();
    let sb = Sandbox::start(config).await?;
    let mut out = std::io::stdout().lock();
    writeln!(out, "stripe  {}", sb.urls().stripe)?;
    drop(out);
    tokio::signal::ctrl_c().await?;
    sb.stop().await;
    Ok(())
}
