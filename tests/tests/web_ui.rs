//! The management UI in a real browser: headless Chromium driven over
//! WebDriver against a real daemon. Sign in (a wrong token first), see the
//! uploaded plugin, get the API's refusal of a file that is not a component,
//! create a task through the form (the API's schema error first), force-run it
//! from the tasks list and watch its run reach `finished` without reloading
//! (live events), then open the run's parts and results.
//!
//! Then the run actions (suspend, resume, cancel, re-run) on a run no agent
//! can take, the edit form (secrets kept when left empty), and a task whose
//! name is HTML shown as text.
//!
//! Then the Webhooks page (a subscription listed, one made through its form
//! with its secret shown once) and the page of a run whose selector matched
//! nothing.
//!
//! Set `JOBSTACK_UI_SCREENSHOTS=<dir>` to keep a PNG of each view.

use std::path::PathBuf;
use std::time::Duration;

use jobstack_e2e::daemon::{ADMIN_TOKEN, Body, Daemon};
use jobstack_e2e::webdriver::Browser;
use jobstack_e2e::{hello_wasm, plugin_wasm, wait_until};
use serde_json::json;

/// Bound for anything the page waits on (a run of the hello plugin on the
/// daemon's own agent takes well under a second).
const PATIENCE: Duration = Duration::from_secs(60);

/// Saves a screenshot when the test fails, and of each view on request.
struct Shots<'a> {
    browser: &'a Browser,
    dir: Option<PathBuf>,
}

impl Shots<'_> {
    fn take(&self, name: &str) {
        if let Some(dir) = &self.dir {
            self.browser.screenshot(&dir.join(format!("{name}.png")));
        }
    }
}

impl Drop for Shots<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let path = std::env::temp_dir().join("jobstack-web-ui-failure.png");
            self.browser.screenshot(&path);
            eprintln!("web_ui: screenshot of the failure: {}", path.display());
        }
    }
}

/// Wait until the text of `css` contains `expected`.
fn wait_text(browser: &Browser, css: &str, expected: &str) -> String {
    wait_until(&format!("{css} to show {expected:?}"), PATIENCE, || {
        let text = browser.text_of(css);
        text.contains(expected).then_some(text)
    })
}

/// Click the element matching `css` once it appears. A live update may
/// replace it between the lookup and the click (a stale element, not
/// clicked); it is then looked up again.
fn click(browser: &Browser, css: &str) {
    wait_until(&format!("{css} to appear and take a click"), PATIENCE, || {
        let element = browser.try_find(css)?;
        match browser.try_click(&element) {
            Ok(()) => Some(()),
            Err(e) if e.contains("stale element") => None,
            Err(e) => panic!("WebDriver click on {css}: {e}"),
        }
    });
}

fn fill(browser: &Browser, css: &str, text: &str) {
    let element = wait_until(&format!("{css} to appear"), PATIENCE, || browser.try_find(css));
    browser.type_into(&element, text);
}

/// Open the UI and sign in with the admin token.
fn sign_in(browser: &Browser, daemon: &Daemon) {
    browser.goto(&format!("{}/", daemon.url));
    fill(browser, "#token", ADMIN_TOKEN);
    click(browser, "#signin-form button[type=submit]");
    wait_text(browser, "#nav", "Plugins");
}

#[test]
fn operator_signs_in_creates_a_task_and_watches_its_run_finish_live() {
    let daemon = Daemon::start();
    daemon.upload_plugin(&hello_wasm());
    let browser = Browser::start();
    let shots = Shots {
        browser: &browser,
        dir: std::env::var_os("JOBSTACK_UI_SCREENSHOTS").map(PathBuf::from),
    };

    // A wrong token is refused with the API's message.
    browser.goto(&format!("{}/", daemon.url));
    fill(&browser, "#token", "not-the-token");
    click(&browser, "#signin-form button[type=submit]");
    let refused = wait_text(&browser, "#signin-error", "unknown admin token");
    assert!(refused.contains("Sign-in refused"), "{refused}");
    shots.take("signin-refused");

    fill(&browser, "#token", ADMIN_TOKEN);
    click(&browser, "#signin-form button[type=submit]");
    wait_text(&browser, "#nav", "Plugins");
    let stored = browser.script("return sessionStorage.getItem('jobstack.token')", json!([]));
    assert_eq!(stored, ADMIN_TOKEN);

    // The uploaded plugin is listed; a file that is not a component is
    // refused with the API's own message.
    click(&browser, "#nav a[href='#/plugins']");
    let row = wait_text(&browser, "tr[data-plugin='hello']", "hello");
    assert!(row.contains("0.1.0"), "{row}");
    let junk = tempfile::Builder::new().suffix(".wasm").tempfile().expect("temporary file");
    std::fs::write(junk.path(), b"this is not a WebAssembly component").unwrap();
    let api = daemon.request(
        "POST",
        "/plugins",
        Some(ADMIN_TOKEN),
        Body::Bytes(b"this is not a WebAssembly component"),
    );
    assert_eq!(api.status, 400, "{}", api.text);
    let api_message = api.json()["error"]["message"].as_str().expect("error message").to_string();
    fill(&browser, "#plugin-file", junk.path().to_str().unwrap());
    click(&browser, "#upload-form button[type=submit]");
    let shown = wait_text(&browser, "#upload-status", "Upload refused");
    assert!(shown.contains(&api_message), "shown {shown:?}, API said {api_message:?}");
    shots.take("plugins");

    // The form: parameters the schema refuses show the API's message, then a
    // valid task is created.
    click(&browser, "#nav a[href='#/tasks/new']");
    fill(&browser, "#task-name", "ui-greet");
    fill(&browser, "#task-params", "{}");
    click(&browser, "#task-frequency option[value=manual]");
    fill(&browser, "#task-agents", "local");
    click(&browser, "#task-submit");
    let schema_error = wait_text(&browser, "#form-error", "name");
    let refused = daemon
        .post("/tasks", &json!({"task": {"name": "ui-greet", "plugin": "hello", "params": {}}}));
    assert_eq!(refused.status, 400, "{}", refused.text);
    let refused_message = refused.json()["error"]["message"].as_str().unwrap().to_string();
    assert_eq!(schema_error, refused_message);
    shots.take("form");
    fill(&browser, "#task-params", r#"{"name": "browser"}"#);
    click(&browser, "#task-submit");
    wait_text(&browser, ".page-head h1", "ui-greet");
    let task = daemon.get("/tasks/ui-greet").expect_ok("task created");
    assert_eq!(task["spec"]["frequency"]["kind"], "manual");
    assert_eq!(task["spec"]["targeting"]["agents"], json!(["local"]));
    assert_eq!(task["spec"]["params"], json!({"name": "browser"}));

    // Force-run from the tasks list; the row reaches `finished` through live
    // events, with no navigation.
    click(&browser, "#nav a[href='#/tasks']");
    wait_text(&browser, "tr[data-task='ui-greet']", "never run");
    wait_text(&browser, "#live", "live");
    click(&browser, "tr[data-task='ui-greet'] button[data-action='force-run']");
    let row = wait_text(&browser, "tr[data-task='ui-greet']", "finished");
    let runs = daemon.get("/runs?task=ui-greet").expect_ok("runs");
    let run = &runs[0];
    assert_eq!(run["state"], "finished", "{run}");
    let done = run["parts"]["finished"].as_u64().unwrap();
    assert!(row.contains(&format!("{done}/{done}")), "progress {done}/{done} not in {row:?}");
    shots.take("tasks");

    // The run: parts with owner and state, results applied.
    click(&browser, "tr[data-task='ui-greet'] a[href^='#/runs/']");
    wait_text(&browser, "#run-state", "finished");
    let parts = wait_text(&browser, "tr[data-part]", "finished");
    assert!(parts.contains("local"), "owner missing: {parts}");
    wait_text(&browser, ".view", "applied");
    shots.take("run");

    // Agents: the daemon's own agent is up.
    click(&browser, "#nav a[href='#/agents']");
    let agent = wait_text(&browser, "tr[data-agent='local']", "up");
    assert!(agent.contains("local"), "{agent}");
    shots.take("agents");
}

#[test]
fn run_actions_edit_and_hostile_names_in_the_tasks_view() {
    let daemon = Daemon::start();
    daemon.upload_plugin(&plugin_wasm("fixture-steps"));
    // No agent is called `nobody`: the run stays waiting, whatever the timing.
    let held = json!({
        "task": {
            "name": "held",
            "plugin": "fixture-steps",
            "params": {"parts": 3, "ms": 10},
            "frequency": {"kind": "manual"},
            "targeting": {"agents": ["nobody"]},
        },
        "secrets": {"password": "kept"},
    });
    daemon.post("/tasks", &held).expect_ok("create held");
    let run = daemon.post("/tasks/held/run", &json!({})).expect_ok("force-run");
    let hostile = r#"<img src=x onerror="window.pwned=1">"#;
    let task = json!({"task": {"name": hostile, "plugin": "fixture-steps",
        "frequency": {"kind": "manual"}, "targeting": {"agents": ["nobody"]}}});
    daemon.post("/tasks", &task).expect_ok("create hostile");

    let browser = Browser::start();
    let shots = Shots {
        browser: &browser,
        dir: std::env::var_os("JOBSTACK_UI_SCREENSHOTS").map(PathBuf::from),
    };
    sign_in(&browser, &daemon);
    let row = "tr[data-task='held']";
    wait_text(&browser, row, "waiting");
    assert!(browser.text_of(row).contains("0/3"), "{}", browser.text_of(row));

    // The hostile name is text: no image element, no script ran.
    let names = browser.script(
        "return [...document.querySelectorAll('tbody tr')].map((tr) => tr.dataset.task)",
        json!([]),
    );
    assert!(names.as_array().unwrap().contains(&json!(hostile)), "{names}");
    let injected = browser.script(
        "return [document.querySelectorAll('#view img').length, window.pwned === undefined]",
        json!([]),
    );
    assert_eq!(injected, json!([0, true]));

    for (action, state) in [("suspend", "suspended"), ("resume", "waiting"), ("cancel", "canceled")]
    {
        click(&browser, &format!("{row} button[data-action='{action}']"));
        wait_text(&browser, &format!("{row} .badge"), state);
        let now = daemon.get(&format!("/runs/{}", run["id"])).expect_ok("run");
        assert_eq!(now["state"], state, "after {action}");
    }
    click(&browser, &format!("{row} button[data-action='rerun']"));
    let again = wait_until("the re-run", PATIENCE, || {
        let runs = daemon.get("/runs?task=held").expect_ok("runs");
        let runs = runs.as_array().unwrap().clone();
        (runs.len() == 2).then(|| runs[0].clone())
    });
    assert_eq!(again["rerun_of"], run["id"]);
    wait_text(&browser, row, &format!("#{}", again["id"]));
    shots.take("tasks-actions");

    // Edit: priority to high; the empty secrets field keeps the stored ones.
    click(&browser, &format!("{row} a[href$='/edit']"));
    wait_until("the edit form", PATIENCE, || {
        (browser.script("return document.querySelector('#task-name')?.value ?? ''", json!([]))
            == json!("held"))
        .then_some(())
    });
    click(&browser, "#task-priority option[value=high]");
    click(&browser, "#task-submit");
    wait_text(&browser, ".page-head h1", "held");
    wait_text(&browser, ".facts", "high");
    let edited = daemon.get("/tasks/held").expect_ok("task");
    assert_eq!(edited["spec"]["priority"], "high");
    assert_eq!(edited["spec"]["params"], json!({"parts": 3, "ms": 10}));
    assert_eq!(edited["spec"]["targeting"]["agents"], json!(["nobody"]));
    assert_eq!(edited["has_secrets"], true, "{edited}");
    shots.take("task");
}

#[test]
fn live_updates_resume_after_the_daemon_restarts() {
    let mut first = Daemon::start();
    first.upload_plugin(&hello_wasm());
    let task = json!({"task": {"name": "after-restart", "plugin": "hello",
        "params": {"name": "again"}, "frequency": {"kind": "manual"},
        "targeting": {"agents": ["local"]}}});
    first.post("/tasks", &task).expect_ok("create task");
    let browser = Browser::start();
    let _shots = Shots { browser: &browser, dir: None };
    sign_in(&browser, &first);
    wait_text(&browser, "tr[data-task='after-restart']", "never run");
    wait_text(&browser, "#live", "live");

    // The stream drops with the daemon; the page says so and keeps trying.
    first.kill();
    wait_text(&browser, "#live", "offline");
    let second = Daemon::builder().data_dir(&first.data_dir).listen(first.addr()).start();
    wait_text(&browser, "#live", "live");

    // A run made after the reconnect shows up without reloading the page.
    second.post("/tasks/after-restart/run", &json!({})).expect_ok("force-run");
    wait_text(&browser, "tr[data-task='after-restart']", "finished");
}

/// The inventory in the browser: a run whose parts observe hosts, then the
/// Inventory page's search, an asset's page with its history, and what the
/// run changed on its page.
#[test]
fn the_inventory_is_searched_an_asset_shows_its_history_and_a_run_its_changes() {
    let daemon = Daemon::start();
    daemon.upload_plugin(&plugin_wasm("fixture-steps"));
    let task = json!({"task": {
        "name": "observe", "plugin": "fixture-steps",
        "params": {"parts": 3, "ms": 0, "observe": true, "records": 2, "tag": "ui"},
        "frequency": {"kind": "manual"},
    }});
    daemon.post("/tasks", &task).expect_ok("create task");
    let run = daemon.post("/tasks/observe/run", &json!({})).expect_ok("force-run")["id"]
        .as_i64()
        .unwrap();
    wait_until("six hosts in the inventory", PATIENCE, || {
        let page = daemon.get("/assets?kind=host").expect_ok("assets");
        (page["assets"].as_array().unwrap().len() == 6).then_some(())
    });
    let browser = Browser::start();
    let shots = Shots {
        browser: &browser,
        dir: std::env::var_os("JOBSTACK_UI_SCREENSHOTS").map(PathBuf::from),
    };
    sign_in(&browser, &daemon);

    click(&browser, "#nav a[data-view=inventory]");
    wait_text(&browser, "#view table", "ui#2.1");
    // A search narrows the table to what the API selects.
    fill(&browser, "input[data-filter=q]", "ui#1.");
    click(&browser, "#inventory-search button[type=submit]");
    let found = wait_until("the search to narrow the table", PATIENCE, || {
        let rows = browser
            .script("return document.querySelectorAll('#view tr[data-asset]').length", json!([]));
        (rows == json!(2)).then(|| browser.text_of("#view table"))
    });
    assert!(
        found.contains("ui#1.0") && found.contains("ui#1.1") && !found.contains("ui#2."),
        "{found}"
    );
    shots.take("inventory-search");

    // The asset's page: attributes with their source, and its history.
    click(&browser, "#view tr[data-asset] a");
    let history = wait_text(&browser, "#asset-history", "appeared");
    assert!(history.contains(&format!("#{run}")), "{history}");
    let page = browser.text_of("#view");
    assert!(page.contains("fixture-steps") && page.contains("tag"), "{page}");
    shots.take("asset");

    // The run's page says what it changed.
    browser.goto(&format!("{}/#/runs/{run}", daemon.url));
    let changed = wait_text(&browser, "#run-changes", "appeared");
    let rows = browser.script(
        "return document.querySelectorAll('#run-changes tr[data-change]').length",
        json!([]),
    );
    assert_eq!(rows, json!(6), "{changed}");
    shots.take("run-changes");
}

/// Webhooks and selectors in the browser: the Webhooks page lists a
/// subscription made through the API (and a new one subscribed through its
/// form shows its secret once), and a forced run of a task whose selector
/// matches nothing in the inventory says so on its page.
#[test]
fn the_webhooks_page_lists_subscriptions_and_a_run_says_its_selector_matched_nothing() {
    let daemon = Daemon::builder().arg("--webhook-allow").arg("127.0.0.1").start();
    daemon.upload_plugin(&plugin_wasm("fixture-steps"));
    let subscribed = daemon
        .post("/webhooks", &json!({"url": "http://127.0.0.1:9/ui-hook", "events": ["agent.down"]}))
        .expect_ok("subscribe");
    let id = subscribed["subscription"]["id"].as_i64().unwrap();
    let task = json!({"task": {"name": "printers", "plugin": "fixture-steps",
        "params": {"parts": 1}, "frequency": {"kind": "manual"},
        "select": {"into": "targets", "kind": "printer", "cidr": "127.0.0.0/8"}}});
    daemon.post("/tasks", &task).expect_ok("create task");
    let run = daemon.post("/tasks/printers/run", &json!({})).expect_ok("force-run");
    assert_eq!(run["selected"], json!([]), "{run}");
    let browser = Browser::start();
    let shots = Shots {
        browser: &browser,
        dir: std::env::var_os("JOBSTACK_UI_SCREENSHOTS").map(PathBuf::from),
    };
    sign_in(&browser, &daemon);

    click(&browser, "#nav a[data-view=webhooks]");
    let row =
        wait_text(&browser, &format!("tr[data-webhook='{id}']"), "http://127.0.0.1:9/ui-hook");
    assert!(row.contains("agent.down"), "{row}");
    // Subscribed through the form: the secret is shown, once, and it is listed.
    fill(&browser, "#webhook-url", "http://127.0.0.1:9/from-the-form");
    click(&browser, "#webhook-form input[data-kind='run.failed']");
    click(&browser, "#webhook-submit");
    let secret = wait_until("the new secret", PATIENCE, || {
        let text = browser.text_of("#webhook-created");
        (!text.is_empty()).then(|| browser.text_of("#webhook-secret"))
    });
    assert_eq!(secret.len(), 64, "a generated secret: {secret:?}");
    wait_text(&browser, "#webhooks", "from-the-form");
    shots.take("webhooks");

    let run_id = run["id"].as_i64().unwrap();
    browser.goto(&format!("{}/#/runs/{run_id}", daemon.url));
    wait_text(&browser, "#run-selected", "the selector matched no asset in the inventory");
    shots.take("run-selected-nothing");
    browser.goto(&format!("{}/#/tasks/printers", daemon.url));
    let select = wait_text(&browser, "#task-select", "kind printer");
    assert!(select.contains("targets") && select.contains("cidr 127.0.0.0/8"), "{select}");
}
