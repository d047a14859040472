//! Patient payments, written exactly once per marker.

use crate::client::Client;
use crate::error::{Error, Operation, Result};
use crate::ids::PatNum;
use crate::types::{NewPayment, Payment, WriteOutcome};
use crate::wire::{self, param, path, resource};

impl Client {
    /// `GET /payments?PatNum=`, every page.
    ///
    /// # Errors
    /// [`Error`](crate::Error) with kind Transient (connect, timeout, 429, 5xx, after the
    /// client's own retries) or Permanent (400/401/403/404, decode, paging overrun).
    pub async fn list_payments(&self, pat_num: PatNum) -> Result<Vec<Payment>> {
        let listing = self
            .list_all(
                Operation::ListPayments,
                path::PAYMENTS,
                &[(param::PAT_NUM, pat_num.to_string())],
                resource::PAYMENT,
                wire::read_payment,
            )
            .await?;
        Ok(listing.items)
    }

    /// The patient's first payment whose note contains `marker`, if any.
    ///
    /// # Errors
    /// As [`Client::list_payments`]; [`Error::InvalidRequest`] (Permanent) for an empty marker.
    pub async fn find_payment_by_marker(
        &self,
        pat_num: PatNum,
        marker: &str,
    ) -> Result<Option<Payment>> {
        if marker.trim().is_empty() {
            return Err(Error::InvalidRequest {
                op: Operation::ListPayments,
                reason: "the marker must not be empty",
            });
        }
        let payments = self.list_payments(pat_num).await?;
        Ok(payments.into_iter().find(|p| p.pay_note.contains(marker)))
    }

    /// `POST /payments`. Open Dental applies it FIFO (or to an eligible payment plan) with the
    /// office's `ApiPaymentType`. Returns the created row, or `None` when Open Dental answers
    /// without one. Prefer [`Client::create_payment_once`].
    ///
    /// # Errors
    /// [`Error::InvalidRequest`] (Permanent) for an amount that is not above zero or not in the
    /// client's currency; Transient for a connect error or 429 (nothing was written; retried by
    /// the client first); **Indeterminate** for a timeout, a dropped connection or any 5xx (look
    /// for the marker before paying again); Permanent for 400/401/403/404 and decode errors.
    pub async fn create_payment(&self, payment: &NewPayment) -> Result<Option<Payment>> {
        if payment.pay_amt.minor() <= 0 {
            return Err(Error::InvalidRequest {
                op: Operation::CreatePayment,
                reason: "the amount must be above zero",
            });
        }
        if payment.pay_amt.currency() != self.currency() {
            return Err(Error::InvalidRequest {
                op: Operation::CreatePayment,
                reason: "the amount is not in the office's currency",
            });
        }
        self.create(
            Operation::CreatePayment,
            path::PAYMENTS,
            &wire::payment_body(payment),
            resource::PAYMENT,
            wire::read_payment,
        )
        .await
    }

    /// Check-then-act: records the payment unless one of the patient's payments already carries
    /// `marker` in its note. Safe to call again after an Indeterminate failure.
    ///
    /// # Errors
    /// [`Error::InvalidRequest`] (Permanent) when `marker` is empty or not in the payment note;
    /// otherwise as [`Client::find_payment_by_marker`] and [`Client::create_payment`].
    pub async fn create_payment_once(
        &self,
        payment: &NewPayment,
        marker: &str,
    ) -> Result<WriteOutcome<Payment>> {
        let carries_marker = payment
            .pay_note
            .as_deref()
            .is_some_and(|n| !marker.trim().is_empty() && n.contains(marker));
        if !carries_marker {
            return Err(Error::InvalidRequest {
                op: Operation::CreatePayment,
                reason: "the payment note must contain the non-empty marker",
            });
        }
        if let Some(existing) = self.find_payment_by_marker(payment.pat_num, marker).await? {
            return Ok(WriteOutcome::AlreadyWritten(existing));
        }
        self.create_payment(payment)
            .await
            .map(WriteOutcome::Created)
    }

    /// Check-then-act for a refund: records `refund` (its `pay_amt` above zero, the amount given
    /// back) as a **negative** payment, as Open Dental enters refunds ("the credit is posted as a
    /// negative payment to the patient account", opendental.com/help244/paymentreturn.html),
    /// unless one of the patient's payments already carries `marker`. A negative payment covers
    /// partial refunds too, which `POST /payments/Refund {PayNum}` (whole payments only, refused
    /// on payment-plan payments) does not.
    ///
    /// # Errors
    /// As [`Client::create_payment_once`].
    pub async fn create_refund_once(
        &self,
        refund: &NewPayment,
        marker: &str,
    ) -> Result<WriteOutcome<Payment>> {
        let carries_marker = refund
            .pay_note
            .as_deref()
            .is_some_and(|n| !marker.trim().is_empty() && n.contains(marker));
        if !carries_marker {
            return Err(Error::InvalidRequest {
                op: Operation::CreatePayment,
                reason: "the refund note must contain the non-empty marker",
            });
        }
        if refund.pay_amt.minor() <= 0 {
            return Err(Error::InvalidRequest {
                op: Operation::CreatePayment,
                reason: "the refunded amount must be above zero",
            });
        }
        if refund.pay_amt.currency() != self.currency() {
            return Err(Error::InvalidRequest {
                op: Operation::CreatePayment,
                reason: "the amount is not in the office's currency",
            });
        }
        if let Some(existing) = self.find_payment_by_marker(refund.pat_num, marker).await? {
            return Ok(WriteOutcome::AlreadyWritten(existing));
        }
        let mut negative = refund.clone();
        negative.pay_amt =
            financing_core::Money::new(-refund.pay_amt.minor(), refund.pay_amt.currency());
        self.create(
            Operation::CreatePayment,
            path::PAYMENTS,
            &wire::payment_body(&negative),
            resource::PAYMENT,
            wire::read_payment,
        )
        .await
        .map(WriteOutcome::Created)
    }
}
