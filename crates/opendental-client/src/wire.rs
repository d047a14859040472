//! Open Dental's wire format: every path, parameter, field name, enum value and quirk lives here,
//! so that a correction is made in one place. Source: opendental.com/site/apispecification.html
//! and the per-resource pages (apitreatplans, apiproctps, apitreatplanattaches, apiprocedurelogs,
//! apipatients, apicommlogs, apipayments).
//!
//! Quirks handled:
//! - PascalCase fields, with a lowercase first letter for derived ones (`procCode`, `isSigned`).
//! - Booleans as the strings `"true"`/`"false"` (real JSON booleans are accepted too).
//! - Money as strings (`"ProcFee": "130.00"`, `"PayAmt": "339"`) or numbers (`"FeeAmt": 204.0`).
//!   A number's shortest round-trip decimal text is parsed into cents; no arithmetic is ever done
//!   on the float, so amounts with up to two decimals come through exact.
//! - Keys as numbers or numeric strings (`"ClinicNum": "0"`); `0` in an optional key means none.
//! - Dates `yyyy-MM-dd`, times `yyyy-MM-dd HH:mm:ss` (a `T` separator and fractional seconds are
//!   tolerated); `0001-01-01`, an empty string or null mean none.
//! - Lists are JSON arrays; a lone object is read as a one-row list, an empty body as no rows.
//!
//! Responses are first parsed into `serde_json::Value` by the shared
//! [`connector_transport::decode_json`] and then read field by field, because Open Dental's quirks
//! (numbers as strings, `0` as none, `0001-01-01` as no date) are per field. Every error here
//! names the resource, the row and the field, never the value.

use chrono::{Datelike, NaiveDate, NaiveDateTime, NaiveTime};
use financing_core::{CdtCode, Currency, Money, MoneyError};
use serde_json::{Map, Number, Value};

use crate::error::{DecodeError, DecodeReason};
use crate::ids::{PatNum, TreatPlanNum};
use crate::types::{
    CommMode, Commlog, NewCommlog, NewPayment, NewTreatPlan, Patient, Payment, ProcStatus, ProcTp,
    ProcedureLog, SentOrReceived, TpStatus, TpType, TreatPlan, TreatPlanAttach, TxtMsgOk,
};

/// The `Authorization` scheme: `ODFHIR {DeveloperKey}/{CustomerKey}`.
pub(crate) const AUTH_SCHEME: &str = "ODFHIR";

/// Resource paths, relative to the base URL.
pub(crate) mod path {
    pub(crate) const TREATPLANS: &str = "treatplans";
    pub(crate) const PROCTPS: &str = "proctps";
    pub(crate) const TREATPLANATTACHES: &str = "treatplanattaches";
    pub(crate) const PROCEDURELOGS: &str = "procedurelogs";
    pub(crate) const PATIENTS: &str = "patients";
    pub(crate) const COMMLOGS: &str = "commlogs";
    pub(crate) const PAYMENTS: &str = "payments";
}

/// Query parameter names.
pub(crate) mod param {
    pub(crate) const OFFSET: &str = "Offset";
    pub(crate) const LIMIT: &str = "Limit";
    pub(crate) const PAT_NUM: &str = "PatNum";
    pub(crate) const TP_STATUS: &str = "TPStatus";
    pub(crate) const SEC_DATE_T_EDIT: &str = "SecDateTEdit";
    pub(crate) const TREAT_PLAN_NUM: &str = "TreatPlanNum";
    pub(crate) const DATE_T_STAMP: &str = "DateTStamp";
    pub(crate) const APT_NUM: &str = "AptNum";
    pub(crate) const PROC_STATUS: &str = "ProcStatus";
    pub(crate) const CLINIC_NUM: &str = "ClinicNum";
    pub(crate) const L_NAME: &str = "LName";
    pub(crate) const F_NAME: &str = "FName";
}

/// Resource names used in decode errors.
pub(crate) mod resource {
    pub(crate) const TREATPLAN: &str = "treatplan";
    pub(crate) const PROCTP: &str = "proctp";
    pub(crate) const TREATPLANATTACH: &str = "treatplanattach";
    pub(crate) const PROCEDURELOG: &str = "procedurelog";
    pub(crate) const PATIENT: &str = "patient";
    pub(crate) const COMMLOG: &str = "commlog";
    pub(crate) const PAYMENT: &str = "payment";
}

/// The row field carrying the server's clock on sync listings.
const SERVER_DATE_TIME: &str = "serverDateTime";

const DATE_FORMAT: &str = "%Y-%m-%d";
const DATE_TIME_FORMAT: &str = "%Y-%m-%d %H:%M:%S";

// ---------------------------------------------------------------------------------------------
// Scalar quirks: pure functions, unit-tested below.
// ---------------------------------------------------------------------------------------------

/// `yyyy-MM-dd HH:mm:ss`, as Open Dental wants times in queries and bodies.
pub(crate) fn format_date_time(t: NaiveDateTime) -> String {
    t.format(DATE_TIME_FORMAT).to_string()
}

/// `yyyy-MM-dd`.
pub(crate) fn format_date(d: NaiveDate) -> String {
    d.format(DATE_FORMAT).to_string()
}

/// Open Dental's null date, `0001-01-01`.
fn is_null_date(d: NaiveDate) -> bool {
    d.year() == 1 && d.ordinal() == 1
}

/// Parses `yyyy-MM-dd HH:mm:ss` (also with `T` and fractional seconds) or a bare `yyyy-MM-dd`
/// (midnight). `0001-01-01` and the empty string are `Ok(None)`.
pub(crate) fn parse_date_time(text: &str) -> Result<Option<NaiveDateTime>, DecodeReason> {
    let text = text.trim();
    if text.is_empty() {
        return Ok(None);
    }
    let parsed = ["%Y-%m-%d %H:%M:%S%.f", "%Y-%m-%dT%H:%M:%S%.f"]
        .iter()
        .find_map(|f| NaiveDateTime::parse_from_str(text, f).ok())
        .or_else(|| {
            NaiveDate::parse_from_str(text, DATE_FORMAT)
                .ok()
                .map(|d| d.and_time(NaiveTime::MIN))
        })
        .ok_or(DecodeReason::MalformedDate)?;
    Ok((!is_null_date(parsed.date())).then_some(parsed))
}

/// Parses `yyyy-MM-dd`; a full date-time keeps its date. `0001-01-01` and `""` are `Ok(None)`.
pub(crate) fn parse_date(text: &str) -> Result<Option<NaiveDate>, DecodeReason> {
    let text = text.trim();
    if text.is_empty() {
        return Ok(None);
    }
    let date = match NaiveDate::parse_from_str(text, DATE_FORMAT) {
        Ok(d) => d,
        Err(_) => match parse_date_time(text)? {
            Some(t) => t.date(),
            None => return Ok(None),
        },
    };
    Ok((!is_null_date(date)).then_some(date))
}

/// `"true"`/`"false"` in any case.
pub(crate) fn parse_bool(text: &str) -> Result<bool, DecodeReason> {
    match text.trim() {
        t if t.eq_ignore_ascii_case("true") => Ok(true),
        t if t.eq_ignore_ascii_case("false") => Ok(false),
        _ => Err(DecodeReason::MalformedBool),
    }
}

/// A decimal amount, possibly negative (refunds, adjustments), into integer minor units.
pub(crate) fn parse_money(text: &str, currency: Currency) -> Result<Money, MoneyError> {
    let text = text.trim();
    match text.strip_prefix('-') {
        Some(rest) => {
            let m = Money::parse(rest, currency)?;
            Money::zero(currency).checked_sub(m)
        }
        None => Money::parse(text, currency),
    }
}

/// A JSON number as money, through its shortest round-trip decimal text (see the module docs).
fn money_from_number(n: &Number, currency: Currency) -> Result<Money, MoneyError> {
    parse_money(&n.to_string(), currency)
}

fn id_from_value(v: &Value) -> Option<u64> {
    match v {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => s.trim().parse::<u64>().ok(),
        _ => None,
    }
}

// ---------------------------------------------------------------------------------------------
// Reading rows.
// ---------------------------------------------------------------------------------------------

/// One JSON object of a response, read field by field with errors that name the field.
pub(crate) struct Row<'a> {
    resource: &'static str,
    index: Option<usize>,
    map: &'a Map<String, Value>,
    currency: Currency,
}

impl<'a> Row<'a> {
    pub(crate) fn new(
        resource: &'static str,
        index: Option<usize>,
        map: &'a Map<String, Value>,
        currency: Currency,
    ) -> Self {
        Self {
            resource,
            index,
            map,
            currency,
        }
    }

    fn fail(&self, field: &'static str, reason: DecodeReason) -> DecodeError {
        DecodeError::new(self.resource, self.index, Some(field), reason)
    }

    /// The value, treating null as absent.
    fn present(&self, field: &'static str) -> Option<&'a Value> {
        self.map.get(field).filter(|v| !v.is_null())
    }

    fn required(&self, field: &'static str) -> Result<&'a Value, DecodeError> {
        self.present(field)
            .ok_or_else(|| self.fail(field, DecodeReason::MissingField))
    }

    pub(crate) fn id<T: From<u64>>(&self, field: &'static str) -> Result<T, DecodeError> {
        let v = self.required(field)?;
        id_from_value(v)
            .map(T::from)
            .ok_or_else(|| self.fail(field, DecodeReason::MalformedId))
    }

    /// Absent, null, `""` and `0` are `None`.
    pub(crate) fn opt_id<T: From<u64>>(
        &self,
        field: &'static str,
    ) -> Result<Option<T>, DecodeError> {
        match self.present(field) {
            None => Ok(None),
            Some(Value::String(s)) if s.trim().is_empty() => Ok(None),
            Some(v) => match id_from_value(v) {
                Some(0) => Ok(None),
                Some(n) => Ok(Some(T::from(n))),
                None => Err(self.fail(field, DecodeReason::MalformedId)),
            },
        }
    }

    pub(crate) fn int(&self, field: &'static str) -> Result<i64, DecodeError> {
        match self.present(field) {
            None => Ok(0),
            Some(Value::Number(n)) => n.as_i64().ok_or_else(|| {
                self.fail(
                    field,
                    DecodeReason::WrongType {
                        expected: "an integer",
                    },
                )
            }),
            Some(Value::String(s)) => s.trim().parse().map_err(|_| {
                self.fail(
                    field,
                    DecodeReason::WrongType {
                        expected: "an integer",
                    },
                )
            }),
            Some(_) => Err(self.fail(
                field,
                DecodeReason::WrongType {
                    expected: "an integer",
                },
            )),
        }
    }

    /// Text; absent or null is empty. Numbers are taken as their text (`"CommType": 239`).
    pub(crate) fn text(&self, field: &'static str) -> Result<String, DecodeError> {
        match self.present(field) {
            None => Ok(String::new()),
            Some(Value::String(s)) => Ok(s.clone()),
            Some(Value::Number(n)) => Ok(n.to_string()),
            Some(_) => Err(self.fail(
                field,
                DecodeReason::WrongType {
                    expected: "a string",
                },
            )),
        }
    }

    pub(crate) fn required_text(&self, field: &'static str) -> Result<String, DecodeError> {
        self.required(field)?;
        self.text(field)
    }

    pub(crate) fn money(&self, field: &'static str) -> Result<Money, DecodeError> {
        self.opt_money(field)?
            .ok_or_else(|| self.fail(field, DecodeReason::MissingField))
    }

    pub(crate) fn opt_money(&self, field: &'static str) -> Result<Option<Money>, DecodeError> {
        let parsed = match self.present(field) {
            None => return Ok(None),
            Some(Value::String(s)) => parse_money(s, self.currency),
            Some(Value::Number(n)) => money_from_number(n, self.currency),
            Some(_) => {
                return Err(self.fail(
                    field,
                    DecodeReason::WrongType {
                        expected: "an amount",
                    },
                ));
            }
        };
        parsed
            .map(Some)
            .map_err(|e| self.fail(field, DecodeReason::MalformedMoney(e)))
    }

    pub(crate) fn opt_bool(&self, field: &'static str) -> Result<Option<bool>, DecodeError> {
        match self.present(field) {
            None => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(Value::String(s)) => parse_bool(s).map(Some).map_err(|r| self.fail(field, r)),
            Some(_) => Err(self.fail(field, DecodeReason::MalformedBool)),
        }
    }

    pub(crate) fn opt_date(&self, field: &'static str) -> Result<Option<NaiveDate>, DecodeError> {
        match self.present(field) {
            None => Ok(None),
            Some(Value::String(s)) => parse_date(s).map_err(|r| self.fail(field, r)),
            Some(_) => Err(self.fail(field, DecodeReason::MalformedDate)),
        }
    }

    pub(crate) fn opt_date_time(
        &self,
        field: &'static str,
    ) -> Result<Option<NaiveDateTime>, DecodeError> {
        match self.present(field) {
            None => Ok(None),
            Some(Value::String(s)) => parse_date_time(s).map_err(|r| self.fail(field, r)),
            Some(_) => Err(self.fail(field, DecodeReason::MalformedDate)),
        }
    }

    fn cdt_code(&self, field: &'static str) -> Result<Option<CdtCode>, DecodeError> {
        let code = self.text(field)?;
        Ok((!code.trim().is_empty()).then(|| CdtCode::new(code)))
    }
}

// ---------------------------------------------------------------------------------------------
// Bodies.
// ---------------------------------------------------------------------------------------------

/// The rows of one list page, plus the server clock they carried.
#[derive(Debug)]
pub(crate) struct DecodedPage<T> {
    pub(crate) items: Vec<T>,
    /// Rows in the page, which decides whether another page follows.
    pub(crate) rows: usize,
    /// The earliest `serverDateTime` on the page, on listings that send it.
    pub(crate) server_date_time: Option<NaiveDateTime>,
}

/// The body as JSON, through the shared [`connector_transport::decode_json`]; an empty body (a
/// create on Open Dental before 23.3.7) is `None`.
fn body_json(body: &[u8], resource: &'static str) -> Result<Option<Value>, DecodeError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    connector_transport::decode_json(body)
        .map(Some)
        .map_err(|e| DecodeError::new(resource, None, None, DecodeReason::NotJson(e)))
}

/// A list page: rows numbered from `first_index` in errors.
pub(crate) fn decode_list<T>(
    body: &[u8],
    resource: &'static str,
    currency: Currency,
    first_index: usize,
    read: fn(&Row<'_>) -> Result<T, DecodeError>,
) -> Result<DecodedPage<T>, DecodeError> {
    let rows: Vec<Value> = match body_json(body, resource)? {
        None => Vec::new(),
        Some(Value::Array(rows)) => rows,
        Some(obj @ Value::Object(_)) => vec![obj],
        Some(_) => {
            return Err(DecodeError::new(
                resource,
                None,
                None,
                DecodeReason::UnexpectedShape {
                    expected: "a list of objects",
                },
            ));
        }
    };
    let mut items = Vec::with_capacity(rows.len());
    let mut server_date_time: Option<NaiveDateTime> = None;
    for (i, value) in rows.iter().enumerate() {
        let index = first_index + i;
        let Value::Object(map) = value else {
            return Err(DecodeError::new(
                resource,
                Some(index),
                None,
                DecodeReason::UnexpectedShape {
                    expected: "an object",
                },
            ));
        };
        let row = Row::new(resource, Some(index), map, currency);
        if let Some(t) = row.opt_date_time(SERVER_DATE_TIME)? {
            server_date_time = Some(server_date_time.map_or(t, |s| s.min(t)));
        }
        items.push(read(&row)?);
    }
    Ok(DecodedPage {
        items,
        rows: rows.len(),
        server_date_time,
    })
}

/// A row of a listing that could not be read, kept apart so the others are still used.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct BadRow {
    /// The row's primary key, when that field itself could be read.
    pub(crate) id: Option<u64>,
    /// The row's edit time, when readable.
    pub(crate) edited: Option<NaiveDateTime>,
    /// What was wrong (resource, row, field; never the value).
    pub(crate) error: DecodeError,
}

/// A list page decoded row by row: a row that cannot be read (a `null` in the list, a malformed
/// field) is reported in the second list instead of failing the page. A body that is not a list
/// still fails as a whole.
pub(crate) fn decode_list_tolerant<T>(
    body: &[u8],
    resource: &'static str,
    id_field: &'static str,
    currency: Currency,
    first_index: usize,
    read: fn(&Row<'_>) -> Result<T, DecodeError>,
) -> Result<(DecodedPage<T>, Vec<BadRow>), DecodeError> {
    let rows: Vec<Value> = match body_json(body, resource)? {
        None => Vec::new(),
        Some(Value::Array(rows)) => rows,
        Some(obj @ Value::Object(_)) => vec![obj],
        Some(_) => {
            return Err(DecodeError::new(
                resource,
                None,
                None,
                DecodeReason::UnexpectedShape {
                    expected: "a list of objects",
                },
            ));
        }
    };
    let row_count = rows.len();
    let mut server_date_time: Option<NaiveDateTime> = None;
    // The shared per-record decoding (connector-transport): each row on its own, a bad one set
    // apart with what could be read of its key and edit time.
    let list = connector_transport::decode_each(
        rows,
        first_index,
        id_field,
        Some("SecDateTEdit"),
        |index, value| {
            let Value::Object(map) = value else {
                return Err(DecodeError::new(
                    resource,
                    Some(index),
                    None,
                    DecodeReason::UnexpectedShape {
                        expected: "an object",
                    },
                ));
            };
            let row = Row::new(resource, Some(index), &map, currency);
            if let Ok(Some(t)) = row.opt_date_time(SERVER_DATE_TIME) {
                server_date_time = Some(server_date_time.map_or(t, |s| s.min(t)));
            }
            read(&row)
        },
    );
    let bad = list
        .unreadable
        .into_iter()
        .map(|u| BadRow {
            id: u.id.and_then(|id| id.trim().parse::<u64>().ok()),
            edited: u.changed.and_then(|t| parse_date_time(&t).ok().flatten()),
            error: u.error,
        })
        .collect();
    Ok((
        DecodedPage {
            items: list.items,
            rows: row_count,
            server_date_time,
        },
        bad,
    ))
}

/// A single object; an empty body is `None` (creates on Open Dental before 23.3.7).
pub(crate) fn decode_one<T>(
    body: &[u8],
    resource: &'static str,
    currency: Currency,
    read: fn(&Row<'_>) -> Result<T, DecodeError>,
) -> Result<Option<T>, DecodeError> {
    match body_json(body, resource)? {
        None => Ok(None),
        Some(Value::Object(map)) => read(&Row::new(resource, None, &map, currency)).map(Some),
        Some(_) => Err(DecodeError::new(
            resource,
            None,
            None,
            DecodeReason::UnexpectedShape {
                expected: "an object",
            },
        )),
    }
}

// ---------------------------------------------------------------------------------------------
// Resources.
// ---------------------------------------------------------------------------------------------

pub(crate) fn read_treat_plan(r: &Row<'_>) -> Result<TreatPlan, DecodeError> {
    Ok(TreatPlan {
        treat_plan_num: r.id::<TreatPlanNum>("TreatPlanNum")?,
        pat_num: r.id::<PatNum>("PatNum")?,
        date_tp: r.opt_date("DateTP")?,
        heading: r.text("Heading")?,
        note: r.text("Note")?,
        respons_party: r.opt_id("ResponsParty")?,
        status: TpStatus::from_wire(&r.required_text("TPStatus")?),
        tp_type: TpType::from_wire(&r.text("TPType")?),
        sec_date_t_edit: r.opt_date_time("SecDateTEdit")?,
        date_t_signed: r.opt_date_time("DateTSigned")?,
        date_t_practice_signed: r.opt_date_time("DateTPracticeSigned")?,
        is_signed: r.opt_bool("isSigned")?,
        is_signed_practice: r.opt_bool("isSignedPractice")?,
    })
}

pub(crate) fn read_proc_tp(r: &Row<'_>) -> Result<ProcTp, DecodeError> {
    Ok(ProcTp {
        proc_tp_num: r.id("ProcTPNum")?,
        treat_plan_num: r.id("TreatPlanNum")?,
        pat_num: r.id("PatNum")?,
        proc_num_orig: r.opt_id("ProcNumOrig")?,
        item_order: r.int("ItemOrder")?,
        tooth_num_tp: r.text("ToothNumTP")?,
        surf: r.text("Surf")?,
        proc_code: CdtCode::new(r.required_text("ProcCode")?),
        descript: r.text("Descript")?,
        fee_amt: r.money("FeeAmt")?,
        pri_ins_amt: r.opt_money("PriInsAmt")?,
        sec_ins_amt: r.opt_money("SecInsAmt")?,
        pat_amt: r.opt_money("PatAmt")?,
        discount: r.opt_money("Discount")?,
        fee_allowed: r.opt_money("FeeAllowed")?,
        tax_amt: r.opt_money("TaxAmt")?,
        prov_num: r.opt_id("ProvNum")?,
        date_tp: r.opt_date("DateTP")?,
        sec_date_t_edit: r.opt_date_time("SecDateTEdit")?,
    })
}

pub(crate) fn read_treat_plan_attach(r: &Row<'_>) -> Result<TreatPlanAttach, DecodeError> {
    Ok(TreatPlanAttach {
        treat_plan_attach_num: r.id("TreatPlanAttachNum")?,
        treat_plan_num: r.id("TreatPlanNum")?,
        proc_num: r.id("ProcNum")?,
        priority: r.opt_id("Priority")?,
        priority_name: r.text("priority")?,
    })
}

pub(crate) fn read_procedure_log(r: &Row<'_>) -> Result<ProcedureLog, DecodeError> {
    Ok(ProcedureLog {
        proc_num: r.id("ProcNum")?,
        pat_num: r.id("PatNum")?,
        apt_num: r.opt_id("AptNum")?,
        proc_date: r.opt_date("ProcDate")?,
        proc_fee: r.money("ProcFee")?,
        status: ProcStatus::from_wire(&r.required_text("ProcStatus")?),
        code_num: r.opt_id("CodeNum")?,
        proc_code: r.cdt_code("procCode")?,
        tooth_num: r.text("ToothNum")?,
        surf: r.text("Surf")?,
        prov_num: r.opt_id("ProvNum")?,
        clinic_num: r.opt_id("ClinicNum")?,
        date_tp: r.opt_date("DateTP")?,
        discount: r.opt_money("Discount")?,
        date_t_stamp: r.opt_date_time("DateTStamp")?,
    })
}

pub(crate) fn read_patient(r: &Row<'_>) -> Result<Patient, DecodeError> {
    Ok(Patient {
        pat_num: r.id("PatNum")?,
        last_name: r.text("LName")?,
        first_name: r.text("FName")?,
        middle_initial: r.text("MiddleI")?,
        preferred: r.text("Preferred")?,
        birthdate: r.opt_date("Birthdate")?,
        address: r.text("Address")?,
        address2: r.text("Address2")?,
        city: r.text("City")?,
        state: r.text("State")?,
        zip: r.text("Zip")?,
        home_phone: r.text("HmPhone")?,
        work_phone: r.text("WkPhone")?,
        wireless_phone: r.text("WirelessPhone")?,
        email: r.text("Email")?,
        language: r.text("Language")?,
        txt_msg_ok: TxtMsgOk::from_wire(&r.text("TxtMsgOk")?),
        pat_status: r.text("PatStatus")?,
        guarantor: r.opt_id("Guarantor")?,
        clinic_num: r.opt_id("ClinicNum")?,
    })
}

pub(crate) fn read_commlog(r: &Row<'_>) -> Result<Commlog, DecodeError> {
    Ok(Commlog {
        commlog_num: r.id("CommlogNum")?,
        pat_num: r.id("PatNum")?,
        comm_date_time: r.opt_date_time("CommDateTime")?,
        comm_type: r.opt_id("CommType")?,
        comm_type_name: r.text("commType")?,
        note: r.text("Note")?,
        mode: CommMode::from_wire(&r.text("Mode_")?),
        sent_or_received: SentOrReceived::from_wire(&r.text("SentOrReceived")?),
        date_t_stamp: r.opt_date_time("DateTStamp")?,
    })
}

pub(crate) fn read_payment(r: &Row<'_>) -> Result<Payment, DecodeError> {
    Ok(Payment {
        pay_num: r.id("PayNum")?,
        pat_num: r.id("PatNum")?,
        pay_type: r.opt_id("PayType")?,
        pay_type_name: r.text("payType")?,
        pay_date: r.opt_date("PayDate")?,
        pay_amt: r.money("PayAmt")?,
        check_num: r.text("CheckNum")?,
        pay_note: r.text("PayNote")?,
        clinic_num: r.opt_id("ClinicNum")?,
        date_entry: r.opt_date("DateEntry")?,
        payment_source: r.text("PaymentSource")?,
    })
}

/// The body of `POST /commlogs`.
pub(crate) fn commlog_body(c: &NewCommlog) -> Value {
    let mut m = Map::new();
    m.insert("PatNum".into(), c.pat_num.get().into());
    m.insert("Note".into(), c.note.clone().into());
    if let Some(t) = c.comm_date_time {
        m.insert("CommDateTime".into(), format_date_time(t).into());
    }
    if let Some(name) = &c.comm_type_name {
        m.insert("commType".into(), name.clone().into());
    }
    if let Some(mode) = &c.mode {
        m.insert("Mode_".into(), mode.as_str().into());
    }
    if let Some(dir) = &c.sent_or_received {
        m.insert("SentOrReceived".into(), dir.as_str().into());
    }
    Value::Object(m)
}

/// The body of `POST /patients` (apipatients.html: `LName` and `FName` required; `Birthdate`
/// yyyy-mm-dd, `WirelessPhone`, `Email`, `State`, `TxtMsgOk` optional). Blank fields are left out.
pub(crate) fn patient_body(p: &crate::patients::NewPatient) -> Value {
    let mut m = Map::new();
    m.insert("LName".into(), p.last_name.clone().into());
    m.insert("FName".into(), p.first_name.clone().into());
    if let Some(d) = p.birthdate {
        m.insert("Birthdate".into(), format_date(d).into());
    }
    for (k, v) in [
        ("WirelessPhone", &p.wireless_phone),
        ("Email", &p.email),
        ("State", &p.state),
    ] {
        if !v.trim().is_empty() {
            m.insert(k.into(), v.clone().into());
        }
    }
    if let Some(ok) = &p.txt_msg_ok {
        m.insert("TxtMsgOk".into(), ok.as_str().into());
    }
    Value::Object(m)
}

/// The body of `POST /payments`. The amount goes as a decimal string, as Open Dental's examples do.
pub(crate) fn payment_body(p: &NewPayment) -> Value {
    let mut m = Map::new();
    m.insert("PayAmt".into(), p.pay_amt.to_decimal_string().into());
    m.insert("PatNum".into(), p.pat_num.get().into());
    if let Some(d) = p.pay_date {
        m.insert("PayDate".into(), format_date(d).into());
    }
    if let Some(note) = &p.pay_note {
        m.insert("PayNote".into(), note.clone().into());
    }
    if let Some(check) = &p.check_num {
        m.insert("CheckNum".into(), check.clone().into());
    }
    if let Some(clinic) = p.clinic_num {
        m.insert("ClinicNum".into(), clinic.get().into());
    }
    if let Some(pref) = p.is_patient_preferred {
        m.insert("isPatientPreferred".into(), pref.to_string().into());
    }
    Value::Object(m)
}

/// The body of `POST /treatplans` (apitreatplans.html, "TreatPlans POST (create)", 23.2.13:
/// `PatNum` required; `Heading`, `Note` and `TPType` optional). Open Dental creates the plan
/// Inactive.
pub(crate) fn treat_plan_body(p: &NewTreatPlan) -> Value {
    let mut m = Map::new();
    m.insert("PatNum".into(), p.pat_num.get().into());
    if !p.heading.trim().is_empty() {
        m.insert("Heading".into(), p.heading.clone().into());
    }
    m.insert("Note".into(), p.note.clone().into());
    if let Some(t) = &p.tp_type {
        m.insert("TPType".into(), t.as_str().into());
    }
    Value::Object(m)
}

// ---------------------------------------------------------------------------------------------
// Enum values.
// ---------------------------------------------------------------------------------------------

macro_rules! wire_enum {
    ($t:ident { $($variant:ident => $text:literal),* $(,)? }) => {
        impl $t {
            /// The value as Open Dental writes it (an unknown value as it was received).
            pub fn as_str(&self) -> &str {
                match self {
                    $(Self::$variant => $text,)*
                    Self::Unknown(raw) => raw,
                }
            }

            /// Reads a wire value; matching ignores case, and anything else is kept as `Unknown`.
            pub(crate) fn from_wire(text: &str) -> Self {
                let t = text.trim();
                $(if t.eq_ignore_ascii_case($text) { return Self::$variant; })*
                Self::Unknown(text.to_owned())
            }
        }
    };
}

wire_enum!(TpStatus {
    Saved => "Saved",
    Active => "Active",
    Inactive => "Inactive",
});
wire_enum!(TpType {
    Insurance => "Insurance",
    Discount => "Discount",
});
wire_enum!(TxtMsgOk {
    NotAsked => "Unknown",
    Yes => "Yes",
    No => "No",
});
wire_enum!(CommMode {
    None => "None",
    Email => "Email",
    Mail => "Mail",
    Phone => "Phone",
    InPerson => "In Person",
    Text => "Text",
    EmailAndText => "Email and Text",
    PhoneAndText => "Phone and Text",
});
wire_enum!(SentOrReceived {
    Neither => "Neither",
    Sent => "Sent",
    Received => "Received",
});

impl ProcStatus {
    /// The value as Open Dental writes it (an unknown value as it was received).
    pub fn as_str(&self) -> &str {
        match self {
            Self::TreatmentPlanned => "TP",
            Self::Complete => "C",
            Self::ExistingCurrentProvider => "EC",
            Self::ExistingOtherProvider => "EO",
            Self::Referred => "R",
            Self::Deleted => "D",
            Self::Condition => "Cn",
            Self::TreatmentPlannedInactive => "TPi",
            Self::Unknown(raw) => raw,
        }
    }

    /// Reads a wire value. Case matters here (`TP` and `TPi` are distinct codes).
    pub(crate) fn from_wire(text: &str) -> Self {
        match text.trim() {
            "TP" => Self::TreatmentPlanned,
            "C" => Self::Complete,
            "EC" => Self::ExistingCurrentProvider,
            "EO" => Self::ExistingOtherProvider,
            "R" => Self::Referred,
            "D" => Self::Deleted,
            "Cn" => Self::Condition,
            "TPi" => Self::TreatmentPlannedInactive,
            _ => Self::Unknown(text.to_owned()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn dt(s: &str) -> NaiveDateTime {
        NaiveDateTime::parse_from_str(s, DATE_TIME_FORMAT).unwrap()
    }

    fn row_of(v: &Value) -> &Map<String, Value> {
        v.as_object().unwrap()
    }

    #[test]
    fn date_times_parse_in_the_documented_and_tolerated_forms() {
        let want = Some(dt("2022-07-02 09:39:54"));
        assert_eq!(parse_date_time("2022-07-02 09:39:54"), Ok(want));
        assert_eq!(parse_date_time("2022-07-02T09:39:54"), Ok(want));
        assert_eq!(
            parse_date_time("2022-07-02 09:39:54.250").map(|t| t.map(|t| t.date())),
            Ok(want.map(|t| t.date()))
        );
        assert_eq!(
            parse_date_time("2022-07-02"),
            Ok(Some(dt("2022-07-02 00:00:00")))
        );
    }

    #[test]
    fn year_one_and_empty_mean_none() {
        assert_eq!(parse_date_time("0001-01-01 00:00:00"), Ok(None));
        assert_eq!(parse_date_time("0001-01-01"), Ok(None));
        assert_eq!(parse_date_time(""), Ok(None));
        assert_eq!(parse_date("0001-01-01"), Ok(None));
        assert_eq!(parse_date("  "), Ok(None));
        // Only the exact null date is null.
        assert!(parse_date("0001-01-02").unwrap().is_some());
    }

    #[test]
    fn dates_take_the_date_of_a_date_time() {
        assert_eq!(
            parse_date("2023-01-24 09:33:46"),
            Ok(NaiveDate::from_ymd_opt(2023, 1, 24))
        );
    }

    #[test]
    fn odd_dates_are_refused() {
        for bad in [
            "07/02/2022",
            "2022-13-01",
            "yesterday",
            "2022-07-02 25:00:00",
        ] {
            assert_eq!(
                parse_date_time(bad),
                Err(DecodeReason::MalformedDate),
                "{bad}"
            );
            assert_eq!(parse_date(bad), Err(DecodeReason::MalformedDate), "{bad}");
        }
    }

    #[test]
    fn booleans_are_strings_in_any_case() {
        assert_eq!(parse_bool("true"), Ok(true));
        assert_eq!(parse_bool("False"), Ok(false));
        assert_eq!(parse_bool("yes"), Err(DecodeReason::MalformedBool));
        assert_eq!(parse_bool(""), Err(DecodeReason::MalformedBool));
    }

    #[test]
    fn money_parses_strings_numbers_and_negatives_exactly() {
        let usd = Currency::Usd;
        assert_eq!(parse_money("130.00", usd), Ok(Money::usd(13_000)));
        assert_eq!(parse_money("339", usd), Ok(Money::usd(33_900)));
        assert_eq!(parse_money("-25.50", usd), Ok(Money::usd(-2_550)));
        assert_eq!(parse_money("1,000.00", usd), Err(MoneyError::Invalid));
        let n: Number = serde_json::from_str("204.0").unwrap();
        assert_eq!(money_from_number(&n, usd), Ok(Money::usd(20_400)));
        // 0.1 + 0.2 style floats: the decimal text is exact where float arithmetic would not be.
        let n: Number = serde_json::from_str("1234567.89").unwrap();
        assert_eq!(money_from_number(&n, usd), Ok(Money::usd(123_456_789)));
        let n: Number = serde_json::from_str("80").unwrap();
        assert_eq!(money_from_number(&n, usd), Ok(Money::usd(8_000)));
        let n: Number = serde_json::from_str("0.005").unwrap();
        assert_eq!(
            money_from_number(&n, usd),
            Err(MoneyError::TooManyDecimals { max: 2 })
        );
    }

    #[test]
    fn ids_accept_numbers_and_numeric_strings_and_zero_is_none_when_optional() {
        let v = json!({"A": 5, "B": "7", "C": "0", "D": 0, "E": "x", "F": -1, "G": ""});
        let r = Row::new("thing", Some(0), row_of(&v), Currency::Usd);
        assert_eq!(r.id::<PatNum>("A"), Ok(PatNum::new(5)));
        assert_eq!(r.id::<PatNum>("B"), Ok(PatNum::new(7)));
        assert_eq!(r.opt_id::<PatNum>("C"), Ok(None));
        assert_eq!(r.opt_id::<PatNum>("D"), Ok(None));
        assert_eq!(r.opt_id::<PatNum>("G"), Ok(None));
        assert_eq!(r.opt_id::<PatNum>("missing"), Ok(None));
        assert_eq!(
            r.id::<PatNum>("E").unwrap_err().reason(),
            &DecodeReason::MalformedId
        );
        assert_eq!(
            r.id::<PatNum>("F").unwrap_err().reason(),
            &DecodeReason::MalformedId
        );
        assert_eq!(
            r.id::<PatNum>("missing").unwrap_err().reason(),
            &DecodeReason::MissingField
        );
    }

    #[test]
    fn malformed_money_names_field_and_resource_but_not_the_value() {
        let v = json!({"FeeAmt": "12O.00"});
        let r = Row::new("proctp", Some(4), row_of(&v), Currency::Usd);
        let err = r.money("FeeAmt").unwrap_err();
        let shown = err.to_string();
        assert_eq!(err.field(), Some("FeeAmt"));
        assert_eq!(err.resource(), "proctp");
        assert!(shown.contains("proctp row 4, field FeeAmt"), "{shown}");
        assert!(!shown.contains("12O"), "{shown}");
    }

    #[test]
    fn wrong_types_are_refused_without_quoting_the_value() {
        let v = json!({"FName": {"nested": "Janet"}, "isSigned": 1, "DateTP": 20220101});
        let r = Row::new("patient", None, row_of(&v), Currency::Usd);
        let e = r.text("FName").unwrap_err();
        assert!(!e.to_string().contains("Janet"));
        assert_eq!(
            r.opt_bool("isSigned").unwrap_err().reason(),
            &DecodeReason::MalformedBool
        );
        assert_eq!(
            r.opt_date("DateTP").unwrap_err().reason(),
            &DecodeReason::MalformedDate
        );
    }

    #[test]
    fn lists_accept_arrays_lone_objects_and_empty_bodies() {
        let read = |r: &Row<'_>| r.id::<PatNum>("PatNum");
        let page = decode_list(
            b"[{\"PatNum\":1},{\"PatNum\":2}]",
            "x",
            Currency::Usd,
            0,
            read,
        )
        .unwrap();
        assert_eq!(page.items, vec![PatNum::new(1), PatNum::new(2)]);
        let page = decode_list(b"{\"PatNum\":3}", "x", Currency::Usd, 0, read).unwrap();
        assert_eq!(page.rows, 1);
        let page = decode_list(b"  ", "x", Currency::Usd, 0, read).unwrap();
        assert_eq!(page.rows, 0);
        let err = decode_list(b"\"Janet\"", "x", Currency::Usd, 0, read).unwrap_err();
        assert!(matches!(err.reason(), DecodeReason::UnexpectedShape { .. }));
        let err = decode_list(b"[{\"PatNum\":1},", "x", Currency::Usd, 0, read).unwrap_err();
        assert!(matches!(err.reason(), DecodeReason::NotJson(_)));
    }

    #[test]
    fn list_rows_are_numbered_from_the_page_offset_and_server_time_is_the_earliest() {
        let body = json!([
            {"PatNum": 1, "serverDateTime": "2025-06-17 09:00:35"},
            {"PatNum": 2, "serverDateTime": "2025-06-17 09:00:34"},
            {"PatNum": "two"},
        ])
        .to_string();
        let read = |r: &Row<'_>| r.id::<PatNum>("PatNum");
        let err = decode_list(body.as_bytes(), "x", Currency::Usd, 200, read).unwrap_err();
        assert_eq!(err.row(), Some(202));
        let ok = json!([
            {"PatNum": 1, "serverDateTime": "2025-06-17 09:00:35"},
            {"PatNum": 2, "serverDateTime": "2025-06-17 09:00:34"},
        ])
        .to_string();
        let page = decode_list(ok.as_bytes(), "x", Currency::Usd, 0, read).unwrap();
        assert_eq!(page.server_date_time, Some(dt("2025-06-17 09:00:34")));
    }

    #[test]
    fn unknown_enum_values_are_kept_raw() {
        assert_eq!(TpStatus::from_wire("saved"), TpStatus::Saved);
        assert_eq!(
            TpStatus::from_wire("Archived"),
            TpStatus::Unknown("Archived".into())
        );
        assert_eq!(TpStatus::Unknown("Archived".into()).as_str(), "Archived");
        assert_eq!(CommMode::from_wire("In Person"), CommMode::InPerson);
        assert_eq!(
            ProcStatus::from_wire("TPi"),
            ProcStatus::TreatmentPlannedInactive
        );
        assert_eq!(
            ProcStatus::from_wire("tp"),
            ProcStatus::Unknown("tp".into())
        );
        assert_eq!(TxtMsgOk::from_wire("Unknown"), TxtMsgOk::NotAsked);
    }

    #[test]
    fn request_bodies_use_pascal_case_strings_and_decimal_amounts() {
        let c = NewCommlog::new(PatNum::new(30), "note [cs:1]")
            .mode(CommMode::Text)
            .sent_or_received(SentOrReceived::Sent)
            .comm_date_time(dt("2022-01-01 11:19:00"));
        assert_eq!(
            commlog_body(&c),
            json!({"PatNum": 30, "Note": "note [cs:1]", "CommDateTime": "2022-01-01 11:19:00",
                   "Mode_": "Text", "SentOrReceived": "Sent"})
        );
        let p = NewPayment::new(PatNum::new(15), Money::usd(12_999))
            .pay_date(NaiveDate::from_ymd_opt(2021, 7, 5).unwrap())
            .patient_preferred(true);
        assert_eq!(
            payment_body(&p),
            json!({"PayAmt": "129.99", "PatNum": 15, "PayDate": "2021-07-05",
                   "isPatientPreferred": "true"})
        );
    }
}
