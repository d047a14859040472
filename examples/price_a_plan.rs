//! Prices a treatment plan and splits the patient portion into an in-house plan.
//!
//! Run with `cargo run -p chairside-examples --example price_a_plan`.
#![allow(clippy::print_stdout)]

use financing_core::{
    CdtCode, CoverageSplit, Money, PatientId, PlanId, PlannedProcedure, TreatmentPlan,
};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let plan = TreatmentPlan {
        id: PlanId::new("tx-demo-1"),
        revision: "1".into(),
        patient_id: PatientId::new("pat-demo-1"),
        accepted_at: chrono::Utc::now(),
        treatment_date: None,
        procedures: vec![
            PlannedProcedure {
                code: CdtCode::new("D2740"),
                fee: Money::parse("1300.00", financing_core::Currency::Usd)?,
                primary_estimate: Some(Money::usd(50_000)),
                secondary_estimate: Some(Money::usd(10_000)),
            },
            PlannedProcedure {
                code: CdtCode::new("D0120"),
                fee: Money::parse("65.00", financing_core::Currency::Usd)?,
                primary_estimate: Some(Money::usd(6_500)),
                secondary_estimate: None,
            },
        ],
    };
    let split = CoverageSplit::from_plan(&plan)?;
    println!("{split}");
    Ok(())
}
