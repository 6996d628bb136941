#!/usr/bin/python3
"""SPEC section 12 in a real browser: the web console at /ui/, driven by
headless Chromium through WebDriver (Debian's chromium, chromium-driver and
python3-selenium; run with Debian's /usr/bin/python3), against the real
daemon and the dbt Cloud stand-in.

Screenshots (PNG) go to $TRIGGERD_UI_SHOTS (ctest: build/ui-screenshots/).
Every wait is a bounded WebDriverWait condition or harness.wait_until.
"""

import json
import os
import shutil
import sys
import unittest
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "integration"))

from harness import (DaemonTest, DBT_TOKEN, DEFAULT_ENV, INBOUND_TOKEN,  # noqa: E402
                     SLOW, dbt_trigger, event, job_uuid, make_config,
                     wait_until)
import standin  # noqa: E402

try:
    from selenium import webdriver
    from selenium.common.exceptions import (NoAlertPresentException,
                                        NoSuchElementException,
                                        StaleElementReferenceException)
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import WebDriverWait
    from selenium.webdriver.support.select import Select
except ImportError as e:  # a clear failure, not a silent skip
    sys.exit("test_console.py needs python3-selenium for %s (%s): run "
             "scripts/deps.sh, and run this test with /usr/bin/python3"
             % (sys.executable, e))

ADMIN = "adm-console-test-token-0123"
JOB_DBT = job_uuid(101)
JOB_HOOK = job_uuid(102)
XSS = "<img src=x onerror=alert(1)>"
XSS_UPSTREAM = "<img src=x onerror=alert(2)>"
SHOTS = os.environ.get("TRIGGERD_UI_SHOTS") or os.path.join(
    os.getcwd(), "ui-screenshots")
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
WAIT = 20 * SLOW


def browser(width=1280, height=1100):
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for a in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage",
              "--disable-gpu", "--no-first-run", "--disable-extensions",
              "--window-size=%d,%d" % (width, height)):
        opts.add_argument(a)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)


def hook_trigger(st):
    """A plain webhook (not dbt) to the second stand-in."""
    return {"name": "notify-hook", "method": "POST",
            "url": st.base_url + "/hooks/ops",
            "header": {"Content-Type": "application/json"},
            "body": {"text": "${{erathos.table_name}} finished"},
            "rules": [{"variable_name": "STATUS", "operation": "EQUAL",
                       "value": "FINISHED"}],
            "jobs": [JOB_HOOK]}


def get(port, path, headers=None):
    req = urllib.request.Request("http://127.0.0.1:%d%s" % (port, path),
                                 headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


class ConsoleTest(DaemonTest):
    def start_dbt_standin(self):
        return self.start_standin(token=DBT_TOKEN)

    def start_console_daemon(self, triggers, server=None):
        srv = {"admin_tokens": [ADMIN]}
        srv.update(server or {})
        return self.start_daemon(make_config(triggers, server=srv),
                                 env=DEFAULT_ENV, token=INBOUND_TOKEN)

    def admin(self, d, path):
        r = d.request("GET", path, None, [("Authorization", "Bearer " + ADMIN)])
        self.assertEqual(r.status, 200, r)
        return r.json

    def wait_delivery(self, d, did, pred, what):
        box = {}

        def ok():
            box["j"] = self.admin(d, "/v1/deliveries/" + did)
            return pred(box["j"])
        wait_until(ok, WAIT, what)
        return box["j"]

    def waiter(self, drv):
        # the page re-renders a table when its data changes: an element
        # found just before may be replaced, so such a read is tried again
        return WebDriverWait(drv, WAIT, ignored_exceptions=(
            NoSuchElementException, StaleElementReferenceException))

    def open_browser(self, **kw):
        drv = browser(**kw)
        self.addCleanup(drv.quit)
        return drv

    def shot(self, drv, name):
        os.makedirs(SHOTS, exist_ok=True)
        path = os.path.join(SHOTS, name + ".png")
        self.assertTrue(drv.save_screenshot(path), path)
        return path

    def login(self, drv, wait, port, tok):
        drv.get("http://127.0.0.1:%d/ui/" % port)
        box = wait.until(lambda x: x.find_element(By.ID, "token"))
        box.clear()
        box.send_keys(tok)
        box.send_keys(Keys.ENTER)

    def assertNoAlert(self, drv):
        try:
            a = drv.switch_to.alert
            self.fail("a script ran: alert(%r)" % a.text)
        except NoAlertPresentException:
            pass

    def tab_to(self, drv, predicate_js, what, limit=80):
        """Presses TAB until the focused element satisfies predicate_js (a
        JS expression over `e`); bounded."""
        for _ in range(limit):
            if drv.execute_script("var e = document.activeElement; return !!(%s);"
                                  % predicate_js):
                return drv.switch_to.active_element
            drv.switch_to.active_element.send_keys(Keys.TAB)
        self.fail("TAB never reached %s" % what)

    # ---- without admin tokens there is no console ----

    def test_absent_without_admin_tokens(self):
        d = self.start_daemon(make_config([hook_trigger(self.start_standin())]),
                              env=DEFAULT_ENV, token=INBOUND_TOKEN)
        for path in ("/ui/", "/ui/app.js", "/ui"):
            status, _, _ = get(d.port, path)
            self.assertEqual(status, 404, path)

    # ---- headers: CSP, nosniff, referrer, caching ----

    def test_headers_and_caching(self):
        d = self.start_console_daemon([hook_trigger(self.start_standin())])
        r = d.request("GET", "/ui")
        self.assertEqual((r.status, r.header("Location")), (308, "/ui/"))
        for path, ctype in (("/ui/", "text/html"), ("/ui/app.js", "text/javascript"),
                            ("/ui/app.css", "text/css"),
                            ("/ui/favicon.svg", "image/svg+xml")):
            status, h, body = get(d.port, path)
            self.assertEqual(status, 200, path)
            self.assertTrue(h["Content-Type"].startswith(ctype), h)
            csp = h["Content-Security-Policy"]
            for part in ("default-src 'none'", "script-src 'self'",
                         "style-src 'self'", "connect-src 'self'",
                         "img-src 'self'", "base-uri 'none'",
                         "form-action 'none'", "frame-ancestors 'none'"):
                self.assertIn(part, csp)
            self.assertNotIn("unsafe", csp)
            self.assertEqual(h["X-Content-Type-Options"], "nosniff")
            self.assertEqual(h["Referrer-Policy"], "no-referrer")
            self.assertEqual(h["Cache-Control"], "no-cache")
            etag = h["ETag"]
            self.assertRegex(etag, r'^"[0-9.]+-[0-9a-f]{16}"$')
            status, h2, body2 = get(d.port, path, {"If-None-Match": etag})
            self.assertEqual((status, body2), (304, b""))
            self.assertEqual(h2["ETag"], etag)
            status, _, _ = get(d.port, path, {"If-None-Match": '"other"'})
            self.assertEqual(status, 200)
        self.assertEqual(get(d.port, "/ui/missing.js")[0], 404)

    # ---- the walk-through ----

    def test_console(self):
        dbt = self.start_dbt_standin()
        dbt.script_runs(final=standin.SUCCESS, queued_s=0.5, running_s=1.0)
        hook = self.start_standin()
        # the hook's first answer is a permanent failure whose body is
        # hostile too; its next answer (after Retry) is a 200
        hook.script(standin.Answer(status=400, body=json.dumps(
            {"error": "rejected " + XSS_UPSTREAM}).encode()),
            standin.Answer(status=200, body=b'{"ok":true}'))
        t_dbt = dbt_trigger("dbt-daily", dbt, 42, jobs=[JOB_DBT])
        t_dbt["dbt"] = {"follow": True, "poll_interval": "1s"}
        d = self.start_console_daemon([t_dbt, hook_trigger(hook)])

        r = d.accept(event(job=JOB_DBT, table_name="orders"))
        dbt_id = r["deliveries"][0]["id"]
        r = d.accept(event(job=JOB_HOOK, table_name=XSS))
        hook_id = r["deliveries"][0]["id"]
        run = self.wait_delivery(d, dbt_id, lambda j: j["run"] and
                                 j["run"]["status"] == "success",
                                 "the followed run's success")["run"]
        self.wait_delivery(d, hook_id, lambda j: j["state"] == "failed",
                           "the hook delivery failed")

        drv = self.open_browser()
        wait = self.waiter(drv)

        # a wrong token shows an error, and the app stays hidden
        self.login(drv, wait, d.port, "not-the-token-at-all")
        err = wait.until(lambda x: x.find_element(By.ID, "login-error").text or None)
        self.assertIn("refused", err)
        self.assertFalse(drv.find_element(By.ID, "app").is_displayed())
        self.shot(drv, "01-login-wrong-token")

        # the right one: deliveries, triggers, metrics
        self.login(drv, wait, d.port, ADMIN)
        wait.until(lambda x: x.find_element(By.ID, "app").is_displayed())
        row = "#delivery-table tr[data-id='%s']"
        wait.until(lambda x: x.find_elements(By.CSS_SELECTOR, row % dbt_id)
                   and x.find_elements(By.CSS_SELECTOR, row % hook_id))
        ids_states = ("return Array.from(document.querySelectorAll("
                      "'#delivery-table tbody tr')).map(function (r) {"
                      " return [r.getAttribute('data-id'), r.getAttribute('data-state')]; })")
        wait.until(lambda x: x.execute_script(ids_states)[:2] ==
                   [[hook_id, "failed"], [dbt_id, "delivered"]])  # newest first
        self.assertEqual(sessionStorage(drv), ADMIN)
        trig = [e.get_attribute("data-trigger") for e in
                drv.find_elements(By.CSS_SELECTOR, "#trigger-table tbody tr")]
        self.assertEqual(trig, ["dbt-daily", "notify-hook"])
        wait.until(lambda x: x.find_element(By.CSS_SELECTOR, "#g-events-accepted dd").text == "2")
        self.assertEqual(drv.find_element(By.CSS_SELECTOR, "#g-pending dd").text, "0")
        # local time shown, UTC on hover
        title, shown = drv.execute_script(
            "var t = document.querySelector(arguments[0]); return [t.title, t.textContent];",
            (row % dbt_id) + " time")
        self.assertRegex(title, r"^\d{4}-\d\d-\d\dT.*Z \(UTC\)$")
        self.assertTrue(shown)
        self.shot(drv, "02-main")

        # the state filter
        Select(drv.find_element(By.ID, "f-state")).select_by_visible_text("failed")
        wait.until(lambda x: [e.get_attribute("data-id") for e in x.find_elements(
            By.CSS_SELECTOR, "#delivery-table tbody tr")] == [hook_id])
        Select(drv.find_element(By.ID, "f-state")).select_by_visible_text("all")
        Select(drv.find_element(By.ID, "f-trigger")).select_by_visible_text("dbt-daily")
        wait.until(lambda x: [e.get_attribute("data-id") for e in x.find_elements(
            By.CSS_SELECTOR, "#delivery-table tbody tr")] == [dbt_id])
        Select(drv.find_element(By.ID, "f-trigger")).select_by_visible_text("all")
        wait.until(lambda x: len(x.find_elements(By.CSS_SELECTOR, "#delivery-table tbody tr")) == 2)

        # keyboard only: TAB to the failed delivery's link, ENTER, TAB to Retry
        drv.find_element(By.TAG_NAME, "body").click()
        drv.execute_script("document.activeElement.blur(); window.scrollTo(0, 0);")
        self.tab_to(drv, "e.classList.contains('open') && e.getAttribute('data-id') === %s"
                    % json.dumps(hook_id), "the failed delivery's link")
        drv.switch_to.active_element.send_keys(Keys.ENTER)
        wait.until(lambda x: x.find_element(By.ID, "detail").is_displayed()
                   and x.find_element(By.ID, "d-id").text == hook_id
                   and x.find_element(By.ID, "retry").is_displayed())
        last = drv.find_element(By.ID, "d-error").text
        self.assertIn("400", last)
        self.assertIn(XSS_UPSTREAM, last, "the upstream answer shown as text")
        # the hostile table name: literal text, no element, no script
        cell = drv.find_element(By.CSS_SELECTOR, "#d-event dd[data-key='table_name']")
        self.assertEqual(cell.text, XSS)
        self.assertEqual(drv.execute_script("return document.querySelectorAll('img').length"), 0)
        self.assertNoAlert(drv)
        history = drv.find_elements(By.CSS_SELECTOR, "#d-history tbody tr")
        self.assertEqual(len(history), 1)
        self.shot(drv, "03-failed-delivery")
        self.tab_to(drv, "e.id === 'retry'", "the Retry button")
        drv.switch_to.active_element.send_keys(Keys.ENTER)
        wait.until(lambda x: x.find_element(By.ID, "detail").get_attribute("data-state") == "delivered")
        self.assertFalse(drv.find_element(By.ID, "retry").is_displayed())
        self.assertEqual(len(drv.find_elements(By.CSS_SELECTOR, "#d-history tbody tr")), 2)
        wait.until(lambda x: x.find_element(By.CSS_SELECTOR, row % hook_id)
                   .get_attribute("data-state") == "delivered")
        self.assertNoAlert(drv)
        self.shot(drv, "04-retried-delivered")

        # the followed dbt run: final status and a link to its href
        drv.find_element(By.CSS_SELECTOR, "a.open[data-id='%s']" % dbt_id).click()
        wait.until(lambda x: x.find_element(By.ID, "d-id").text == dbt_id
                   and x.find_elements(By.CSS_SELECTOR, "#d-run-status .state"))
        self.assertEqual(drv.find_element(By.CSS_SELECTOR, "#d-run-status").text, "success")
        a = drv.find_element(By.CSS_SELECTOR, "#d-run-link a")
        self.assertEqual(a.get_attribute("href"), run["href"])
        self.assertEqual(a.get_attribute("rel"), "noopener noreferrer")
        self.assertEqual(drv.find_element(By.CSS_SELECTOR, "#d-event dd[data-key='table_name']").text,
                         "orders")
        self.shot(drv, "05-dbt-run")

        # phone width: nothing wider than the screen, everything reachable
        drv.set_window_size(375, 800)
        wait.until(lambda x: x.execute_script("return window.innerWidth") <= 375)
        wait.until(lambda x: x.execute_script(
            "return document.documentElement.scrollWidth <= window.innerWidth"))
        drv.get("http://127.0.0.1:%d/ui/" % d.port)  # token kept in the tab
        wait.until(lambda x: x.find_elements(By.CSS_SELECTOR, row % hook_id))
        wait.until(lambda x: x.execute_script(
            "return document.documentElement.scrollWidth <= window.innerWidth"))
        self.assertTrue(drv.find_element(By.CSS_SELECTOR, "a.open[data-id='%s']" % hook_id)
                        .is_displayed())
        drv.execute_script("document.getElementById('deliveries').scrollIntoView()")
        self.shot(drv, "06-phone-375px")

        # no CSP violation, no script error, no missing file in the log
        # (the only error: the wrong token's 401, on purpose)
        logs = [e for e in drv.get_log("browser") if e["level"] == "SEVERE"
                and "status of 401" not in e["message"]]
        self.assertEqual(logs, [])

    # ---- fan-in progress (SPEC section 9) ----

    def test_fanin_progress(self):
        st = self.start_dbt_standin()
        t = dbt_trigger("dbt-fanin", st, 7, jobs=[JOB_DBT, JOB_HOOK])
        t["wait_for"] = "all"
        cfg = make_config([t], server={"admin_tokens": [ADMIN]})
        probe = self.new_daemon(cfg, env=DEFAULT_ENV, token=INBOUND_TOKEN)
        rc = probe.check()
        if rc.returncode != 0:
            self.skipTest("fan-in (SPEC section 9, wait_for: all) is not on "
                          "this branch: --check refuses it")
        d = probe.start()
        d.accept(event(job=JOB_DBT))
        trig = self.admin(d, "/v1/triggers")["triggers"][0]
        self.assertEqual(trig["waiting"], {"done": [JOB_DBT], "missing": [JOB_HOOK]})
        drv = self.open_browser()
        wait = self.waiter(drv)
        self.login(drv, wait, d.port, ADMIN)
        cell = wait.until(lambda x: x.find_elements(
            By.CSS_SELECTOR, "#trigger-table tr[data-trigger='dbt-fanin'] td.fanin progress"))[0]
        self.assertEqual((cell.get_attribute("value"), cell.get_attribute("max")), ("1", "2"))
        text = drv.find_element(By.CSS_SELECTOR, "#trigger-table td.fanin").text
        self.assertIn("1 of 2", text)
        self.assertIn("missing: " + JOB_HOOK, text)
        self.shot(drv, "07-fanin")


def sessionStorage(drv):
    return drv.execute_script("return sessionStorage.getItem('triggerd.adminToken')")


if __name__ == "__main__":
    unittest.main(verbosity=2)
