//! A real browser against the demo world: Debian's Chromium, driven through its chromedriver with
//! fantoccini. Staff sign in to the dashboard and see the demo's plans with initials only; a
//! patient opens their link on a phone-sized screen, sees the amounts without procedure codes,
//! and follows "pay the deposit" to the Stripe stand-in's checkout page.
//!
//! Needs `/usr/bin/chromium` and `/usr/bin/chromedriver` (`apt-get install chromium
//! chromium-driver`; `scripts/test.sh` installs them). Without them the test fails, saying so.
//!
//! Set `CHAIRSIDE_SCREENSHOTS` to a directory to keep PNGs of the dashboard, the patient page and
//! the checkout page there, and ([`actions`]) of the texts opt-in, the receipt, the in-house offer
//! and the counteroffers on the dashboard (`docs/screenshots` holds the committed ones).

use std::fs::File;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use chairside::demo::world::{PRACTICES, STAFF_PASSWORD, World, WorldOptions};
use chairside_engine::links::PatientLinks;
use chairside_workflow::{Status, WorkflowState};
use fantoccini::{Client, ClientBuilder, Locator};
use financing_core::PracticeId;
use hyper_util::client::legacy::connect::HttpConnector;
use serde_json::json;

const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
const CHROMIUM: &str = "/usr/bin/chromium";
const INSTALL_HINT: &str = "the real-browser test needs Debian's Chromium and its WebDriver: run \
                            `apt-get install chromium chromium-driver` (scripts/test.sh does it \
                            when run as root)";

mod actions;

/// One real-browser test at a time: each runs a whole world and a Chromium, and the demo world's
/// compressed timings do not need a second one beside them on a small machine.
static ONE_BROWSER: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The patient links' lifetime in the demo world.
const LINK_LIFETIME: Duration = Duration::from_secs(30 * 86_400);

/// A chromedriver child process on a free loopback port, in its own process group; dropping it
/// kills the group, so no Chromium outlives the test even when an assertion fails mid-session.
struct Chromedriver {
    child: Child,
    url: String,
}

impl Chromedriver {
    fn start(dir: &Path) -> Self {
        for binary in [CHROMEDRIVER, CHROMIUM] {
            assert!(
                Path::new(binary).exists(),
                "{binary} is missing: {INSTALL_HINT}"
            );
        }
        let port = TcpListener::bind(("127.0.0.1", 0))
            .and_then(|l| l.local_addr())
            .expect("a free loopback port")
            .port();
        let log_path = dir.join("chromedriver.log");
        let log = File::create(&log_path).expect("chromedriver log file");
        let mut child = {
            use std::os::unix::process::CommandExt as _;
            Command::new(CHROMEDRIVER)
                .arg(format!("--port={port}"))
                .stdin(Stdio::null())
                .stdout(log.try_clone().expect("log file handle"))
                .stderr(log)
                .process_group(0)
                .spawn()
                .unwrap_or_else(|e| panic!("starting {CHROMEDRIVER}: {e}; {INSTALL_HINT}"))
        };
        let started = Instant::now();
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            let exited = child.try_wait().expect("chromedriver status");
            if exited.is_some() || started.elapsed() > Duration::from_secs(15) {
                let _ = child.kill();
                let _ = child.wait();
                let log = std::fs::read_to_string(&log_path).unwrap_or_default();
                panic!("chromedriver did not listen on port {port} ({exited:?}):\n{log}");
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        Self {
            child,
            url: format!("http://127.0.0.1:{port}"),
        }
    }

    /// A new headless Chromium session with its own profile under `dir`. `mobile` emulates a
    /// phone screen of that many CSS pixels.
    async fn session(&self, dir: &Path, mobile: Option<(u32, u32)>) -> Client {
        let profile = dir.join(format!("profile-{}", mobile.is_some()));
        std::fs::create_dir_all(&profile).expect("profile directory");
        let mut options = json!({
            "binary": CHROMIUM,
            "args": [
                "--headless=new",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
                "--hide-scrollbars",
                "--lang=en-US",
                format!("--user-data-dir={}", profile.display()),
                "--window-size=1280,900",
            ],
        });
        if let Some((width, height)) = mobile {
            options["mobileEmulation"] = json!({
                "deviceMetrics": {"width": width, "height": height, "pixelRatio": 2.0, "touch": true},
            });
        }
        let mut capabilities = serde_json::Map::new();
        capabilities.insert("browserName".into(), json!("chrome"));
        capabilities.insert("goog:chromeOptions".into(), options);
        ClientBuilder::new(HttpConnector::new())
            .capabilities(capabilities)
            .connect(&self.url)
            .await
            .unwrap_or_else(|e| panic!("a Chromium session through chromedriver: {e}"))
    }
}

impl Drop for Chromedriver {
    fn drop(&mut self) {
        // The group id is chromedriver's pid (`process_group(0)`); Chromium runs in that group.
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", self.child.id())])
            .stderr(Stdio::null())
            .status();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Where to keep screenshots, when asked.
fn screenshot_dir() -> Option<PathBuf> {
    let dir = PathBuf::from(std::env::var_os("CHAIRSIDE_SCREENSHOTS")?);
    std::fs::create_dir_all(&dir).expect("screenshot directory");
    Some(dir)
}

async fn screenshot(client: &Client, name: &str) {
    let Some(dir) = screenshot_dir() else {
        return;
    };
    let png = client.screenshot().await.expect("screenshot");
    assert!(png.starts_with(b"\x89PNG"), "{name} is a PNG");
    std::fs::write(dir.join(name), png).expect("writing the screenshot");
}

/// A Chrome DevTools command through chromedriver's `goog/cdp/execute` (WebDriver has no
/// whole-page screenshot; with phone emulation the window cannot simply grow).
#[derive(Debug)]
struct Cdp {
    cmd: &'static str,
    params: serde_json::Value,
}

impl fantoccini::wd::WebDriverCompatibleCommand for Cdp {
    fn endpoint(
        &self,
        base_url: &url::Url,
        session_id: Option<&str>,
    ) -> Result<url::Url, url::ParseError> {
        base_url.join(&format!(
            "session/{}/goog/cdp/execute",
            session_id.unwrap_or_default()
        ))
    }

    fn method_and_body(&self, _: &url::Url) -> (http::Method, Option<String>) {
        let body = json!({"cmd": self.cmd, "params": self.params});
        (http::Method::POST, Some(body.to_string()))
    }
}

/// A screenshot of the whole page, below the fold too (a phone-sized page), when asked.
async fn screenshot_page(client: &Client, name: &str) {
    use base64::Engine as _;
    let Some(dir) = screenshot_dir() else {
        return;
    };
    let shot = client
        .issue_cmd(Cdp {
            cmd: "Page.captureScreenshot",
            params: json!({"format": "png", "captureBeyondViewport": true}),
        })
        .await
        .expect("a whole-page screenshot");
    let png = base64::engine::general_purpose::STANDARD
        .decode(shot["data"].as_str().expect("the screenshot's data"))
        .expect("base64");
    assert!(png.starts_with(b"\x89PNG"), "{name} is a PNG");
    std::fs::write(dir.join(name), png).expect("writing the screenshot");
}

/// Grows the window to the page's full height (for a whole-page screenshot).
async fn fit_height(client: &Client, width: u32) {
    let height = client
        .execute("return document.documentElement.scrollHeight;", Vec::new())
        .await
        .expect("page height")
        .as_u64()
        .unwrap_or(900);
    let height = u32::try_from(height).unwrap_or(900).clamp(600, 3000);
    // The window is a little taller than its viewport.
    let (_, _, _, outer) = client.get_window_rect().await.expect("window rect");
    let inner = client
        .execute("return window.innerHeight;", Vec::new())
        .await
        .expect("viewport height")
        .as_u64()
        .unwrap_or(outer);
    let chrome = u32::try_from(outer.saturating_sub(inner)).unwrap_or(0);
    client
        .set_window_size(width, height + chrome)
        .await
        .expect("resizing the window");
}

async fn text_of(client: &Client, css: &str) -> String {
    let url = client.current_url().await.expect("url");
    client
        .find(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("{css} on {url}: {e}"))
        .text()
        .await
        .expect("element text")
}

/// The Done workflow whose deposit link the patient follows: financed by a lender (CareCredit
/// when it can), with its checkout session still open when there is one.
fn deposit_workflow(world: &World, rows: &[WorkflowState]) -> WorkflowState {
    let stripe = world.sandbox.stripe();
    let open = |s: &WorkflowState| {
        s.stripe
            .checkout_session_id
            .as_deref()
            .and_then(|id| stripe.object(id))
            .is_some_and(|session| session["status"] == "open")
    };
    let mut candidates: Vec<&WorkflowState> = rows
        .iter()
        .filter(|s| s.status == Status::Done && s.stripe.checkout_url.is_some())
        .collect();
    // CareCredit's approvals first: the same page every run, for the screenshots.
    candidates.sort_by_key(|s| {
        let path = s.result.as_ref().map(|r| r.path.as_str());
        let financed = s.result.as_ref().is_some_and(|r| r.financed.is_some());
        // ... with the terms the lender reported (a returning cardholder's lookup has none).
        (
            path != Some("carecredit approved"),
            !financed,
            s.financed_offer().is_none(),
            !open(s),
        )
    });
    (*candidates
        .first()
        .expect("a Done workflow with a deposit link"))
    .clone()
}

/// A desktop session signed in to `practice`'s dashboard (an anonymous visit first lands on the
/// sign-in form).
async fn sign_in(
    driver: &Chromedriver,
    dir: &Path,
    base: &url::Url,
    world: &World,
    practice: &PracticeId,
) -> Client {
    let (username, _) = world
        .staff
        .iter()
        .find(|(_, p)| p == practice)
        .expect("a staff account at the practice")
        .clone();
    let staff = driver.session(dir, None).await;
    staff
        .goto(base.join("staff").expect("url").as_str())
        .await
        .expect("opening /staff");
    assert_eq!(
        staff.current_url().await.expect("url").path(),
        "/staff/login",
        "an anonymous visit lands on the sign-in form"
    );
    staff
        .find(Locator::Id("username"))
        .await
        .expect("username field")
        .send_keys(&username)
        .await
        .expect("typing the username");
    staff
        .find(Locator::Id("password"))
        .await
        .expect("password field")
        .send_keys(STAFF_PASSWORD)
        .await
        .expect("typing the password");
    staff
        .find(Locator::Css("button[type=submit]"))
        .await
        .expect("sign-in button")
        .click()
        .await
        .expect("signing in");
    staff
        .wait()
        .at_most(Duration::from_secs(10))
        .for_url(&base.join("staff").expect("url"))
        .await
        .expect("the dashboard after signing in");
    staff
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn staff_and_patient_pages_work_in_a_real_browser() {
    let _one = ONE_BROWSER.lock().await;
    // Arrange: the demo world, driven to its end, and a chromedriver.
    let dir = tempfile::tempdir().expect("temporary directory");
    let driver = Chromedriver::start(dir.path());
    // The sandbox's patients leave their deposits unpaid: this test pays one in the browser.
    let mut options = WorldOptions::default();
    options.sandbox.patients.pay_checkout_links = false;
    let mut world = World::start(dir.path(), options)
        .await
        .expect("world starts");
    world.seed_demo().expect("seeding");
    let settled = world.drive(Duration::from_secs(45)).await.expect("driving");
    assert!(settled, "the demo settled before the browser looks at it");
    // Every persona where it belongs, or the counts below would be about the wrong world.
    let (rows, _) = chairside::demo::report(&world).await.expect("report");
    let off: Vec<String> = rows
        .iter()
        .filter(|r| !r.ok)
        .map(|r| {
            format!(
                "{} ({}): got {}, expected {}",
                r.plan, r.persona, r.path, r.expected
            )
        })
        .collect();
    assert!(
        off.is_empty(),
        "workflows off their persona's path:\n{}",
        off.join("\n")
    );
    let texas = PracticeId::new(PRACTICES[0].id);
    let texas_cases = world.cases.iter().filter(|c| c.practice == texas).count();
    let texas_rows: Vec<WorkflowState> = world
        .store
        .workflows(Some(&texas), None, 1000)
        .await
        .expect("workflows")
        .into_iter()
        .map(|r| r.state)
        .collect();
    let base = world.http_base.clone();

    // Act + Assert: the front desk signs in.
    let staff = sign_in(&driver, dir.path(), &base, &world, &texas).await;
    assert!(
        text_of(&staff, "header h1")
            .await
            .contains(PRACTICES[0].name),
        "the dashboard is the Texas practice's"
    );
    let plans = staff
        .find_all(Locator::Css("section[aria-labelledby=plans] tbody tr"))
        .await
        .expect("plan rows");
    assert!(texas_cases >= 11, "the demo seeds at least 11 Texas plans");
    assert_eq!(
        plans.len(),
        texas_cases,
        "one row per plan the demo accepted at the Texas practice"
    );
    for row in &plans {
        let patient = row
            .find(Locator::Css("td"))
            .await
            .expect("patient cell")
            .text()
            .await
            .expect("patient text");
        let initials = patient.trim();
        assert!(
            initials.len() == 4
                && initials.chars().step_by(2).all(|c| c.is_ascii_uppercase())
                && initials.chars().skip(1).step_by(2).all(|c| c == '.'),
            "the patient column shows initials only, got {initials:?}"
        );
    }
    let source = staff.source().await.expect("dashboard source");
    assert!(
        !source.contains("Testpatient") && !source.contains("@example.test"),
        "no seeded last name or email address on the dashboard"
    );
    assert!(
        source.contains("CareCredit approved"),
        "the dashboard says where settled plans ended, lenders by name"
    );
    assert!(
        !source.contains("carecredit approved"),
        "never the lender's raw id"
    );
    fit_height(&staff, 1280).await;
    screenshot(&staff, "staff-dashboard.png").await;

    // Act + Assert: a task's workflow page, and its form (CSRF token, same-origin post).
    // As many as the practice's open tasks: the quiet patient, the bad estimate, and the lender
    // charge staff run on today's treatment (collection).
    let open_tasks = world
        .store
        .tasks(Some(&texas), false)
        .await
        .expect("open tasks")
        .len();
    assert!(
        open_tasks >= 2,
        "at least the quiet patient and the bad data"
    );
    assert_eq!(
        text_of(&staff, "#tasks").await,
        format!("Needs you ({open_tasks})")
    );
    let mut quiet = None;
    for row in staff
        .find_all(Locator::Css("section[aria-labelledby=tasks] tbody tr"))
        .await
        .expect("task rows")
    {
        if row
            .text()
            .await
            .expect("row text")
            .contains("Patient went quiet")
        {
            quiet = Some(row);
        }
    }
    let quiet = quiet.expect("the quiet patient's task");
    let initials = quiet
        .find(Locator::Css("td a"))
        .await
        .expect("the task's workflow link");
    let initials_text = initials.text().await.expect("initials");
    initials.click().await.expect("opening the workflow");
    assert!(
        text_of(&staff, "header h1").await.contains(&initials_text),
        "the workflow page is the task's patient's"
    );
    let source = staff.source().await.expect("workflow page source");
    assert!(source.contains("Audit trail") && !source.contains("Testpatient"));
    staff
        .find(Locator::XPath(
            "//form//button[normalize-space()='Mark handled']",
        ))
        .await
        .expect("the mark-handled button")
        .click()
        .await
        .expect("marking the task handled");
    staff
        .wait()
        .at_most(Duration::from_secs(10))
        .for_url(&base.join("staff").expect("url"))
        .await
        .expect("back on the dashboard after the action");
    assert_eq!(
        text_of(&staff, "#tasks").await,
        format!("Needs you ({})", open_tasks - 1),
        "the handled task left the list"
    );
    staff.close().await.expect("closing the staff session");

    // Act + Assert: the patient opens their link on a phone.
    let workflow = deposit_workflow(&world, &texas_rows);
    let split = workflow.split.expect("the workflow has a cost split");
    let deposit = workflow.result.as_ref().expect("a result").deposit;
    let link = PatientLinks::new(
        base.clone(),
        WorldOptions::default().link_key,
        LINK_LIFETIME,
    )
    // Generation 0: the workflow's links were never revoked.
    .link(&workflow.id, 0, chrono::Utc::now());
    let patient = driver.session(dir.path(), Some((390, 844))).await;
    patient.goto(link.as_str()).await.expect("opening the link");
    let page = text_of(&patient, "body").await;
    for amount in [split.total, split.insurance, split.patient_portion, deposit] {
        assert!(
            page.contains(&amount.to_string()),
            "the patient page shows {amount}:\n{page}"
        );
    }
    assert!(
        text_of(&patient, "header h1")
            .await
            .contains(PRACTICES[0].name),
        "the patient page names the practice"
    );
    assert!(
        page.contains("CareCredit") || page.contains("Sunbit"),
        "the lender as patients know it:\n{page}"
    );
    assert!(
        page.contains("(512) 555-0100"),
        "the practice's phone as people write it:\n{page}"
    );
    // The live status, and the terms the lender reported beside the financed amount.
    let status = text_of(&patient, "section.status").await;
    assert!(
        status.contains("Approved") || status.contains("Paid"),
        "the live status:\n{status}"
    );
    assert!(
        texas_rows.iter().any(|s| s.financed_offer().is_some()),
        "the sandbox lenders report terms with their approvals"
    );
    if workflow.financed_offer().is_some() {
        assert!(
            page.contains("Term") && page.contains("12 months") && page.contains("APR"),
            "the lender's reported terms:\n{page}"
        );
    }
    let source = patient.source().await.expect("patient page source");
    assert!(
        !source.contains("D2740") && !source.contains("D2950"),
        "no procedure code on the patient page"
    );
    let viewport = patient
        .execute("return window.innerWidth;", Vec::new())
        .await
        .expect("viewport width");
    assert_eq!(viewport, json!(390), "the page is seen at phone width");
    let overflow = patient
        .execute(
            "return document.documentElement.scrollWidth > window.innerWidth;",
            Vec::new(),
        )
        .await
        .expect("overflow check");
    assert_eq!(overflow, json!(false), "nothing overflows a phone screen");
    screenshot_page(&patient, "patient-page.png").await;

    // Act + Assert: "pay the deposit" leads to the Stripe stand-in's checkout page.
    let stripe_base = world.sandbox.urls().stripe.clone();
    patient
        .find(Locator::Css(&format!(
            "a[href$='/p/{}/pay']",
            token_of(&link)
        )))
        .await
        .expect("the pay-deposit button")
        .click()
        .await
        .expect("following the deposit link");
    let started = Instant::now();
    let checkout = loop {
        let url = patient.current_url().await.expect("url");
        if url.port() == stripe_base.port() || started.elapsed() > Duration::from_secs(10) {
            break url;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(
        (checkout.host_str(), checkout.port()),
        (stripe_base.host_str(), stripe_base.port()),
        "the browser is at the Stripe stand-in, not {checkout}"
    );
    let session_id = workflow
        .stripe
        .checkout_session_id
        .as_deref()
        .expect("a checkout session id");
    assert_eq!(
        checkout.path(),
        format!("/checkout/{session_id}"),
        "the workflow's own checkout session"
    );
    assert_eq!(
        text_of(&patient, "#amount").await.replace(',', ""),
        deposit.to_string().replace(',', ""),
        "the checkout page asks for the deposit"
    );
    screenshot(&patient, "stripe-checkout.png").await;
    patient.close().await.expect("closing the patient session");

    drop(driver);
    world.stop().await;
}

/// The token of a patient link (`…/p/{token}`).
fn token_of(link: &url::Url) -> String {
    link.path_segments()
        .and_then(|mut s| s.next_back())
        .expect("a token")
        .to_owned()
}
