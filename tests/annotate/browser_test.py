#!/usr/bin/env python3
"""The annotation page in a real browser: headless Chromium driven by selenium through Debian's
chromedriver, against `posttrain annotate serve` on a free port.

An annotator signs in with the token `annotate add-user` printed, judges one task with the
keyboard (A/B, a strength key, Enter), judges another and edits the chosen response (E, then
Ctrl+Enter from the box), and skips the third (S, a reason, Enter). Then `store export --format
trl` must hold exactly those two pairs with their strengths, and the edit must be in the store as
the top of an edited > chosen > rejected ranking. Along the way: a response holding <script> is
shown as text (nothing runs), and a markdown code block is shown as code.

    browser_test.py --bin build/posttrain [--screenshot annotate/screenshot.png] [--keep]

Chromium and its driver are Debian's (/usr/bin/chromium, /usr/bin/chromedriver) unless
POSTTRAIN_CHROMIUM / POSTTRAIN_CHROMEDRIVER name others.

Exit status 0 pass, 1 fail, 77 skip (selenium missing or Chromium cannot start; CTest's
SKIP_RETURN_CODE). Everything is bounded: waits time out, the server is stopped at the end.
"""
import argparse
import json
import os
import select
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time

SKIP = 77

try:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support import expected_conditions as EC
    from selenium.webdriver.support.ui import WebDriverWait
except ImportError as e:  # setup.sh installs it; without it there is no browser to drive
    print(f"SKIP: python selenium is not installed ({e}); run scripts/setup.sh")
    sys.exit(SKIP)

PROMPTS = [
    # 1: a code answer against one that tries to inject HTML.
    {"prompt": "Write hello world in C.",
     "responses": ["Here it is:\n```c\n#include <stdio.h>\nint main(void) { puts(\"hello\"); }\n```\n"
                   "Compile with `cc hello.c`.",
                   "<script>window.__pwned = 1</script><b>bold?</b> print('hello')"],
     "ranking": [0, 1]},
    # 2: a chat prompt; the annotator edits the chosen answer.
    {"prompt": [{"role": "system", "content": "Answer briefly."},
                {"role": "user", "content": "What is the capital of France?"}],
     "responses": ["Paris.", "It is Lyon."], "ranking": [0, 1]},
    # 3: skipped.
    {"prompt": "Translate 'Fernweh' into English.",
     "responses": ["wanderlust", "homesickness"], "ranking": [0, 1]},
]


def run(cmd, **kw):
    return subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=60, **kw)


def make_store(bin_, work):
    db = os.path.join(work, "s.db")
    src = os.path.join(work, "candidates.jsonl")
    with open(src, "w") as f:
        for p in PROMPTS:
            f.write(json.dumps(p) + "\n")
    # The ranking import stores the prompts and their round-1 responses; its pairs are removed
    # so the store holds candidates only, as after rejection sampling.
    run([bin_, "store", "import", "--store", db, "--format", "ranking", "--round", "1", src])
    con = sqlite3.connect(db)
    con.execute("DELETE FROM preference_pairs")
    con.commit()
    con.close()
    token = run([bin_, "annotate", "add-user", "alice", "--store", db]).stdout.strip()
    return db, token


def start_server(bin_, db, work):
    err = open(os.path.join(work, "serve.err"), "w")
    proc = subprocess.Popen([bin_, "annotate", "serve", "--store", db, "--port", "0",
                             "--agreement", "0", "--seed", "5"],
                            stdout=subprocess.PIPE, stderr=err, text=True)
    ready, _, _ = select.select([proc.stdout], [], [], 20)
    if not ready:
        proc.kill()
        raise RuntimeError("annotate serve printed nothing within 20 s")
    info = json.loads(proc.stdout.readline())
    return proc, info


def stop_server(proc):
    proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        raise RuntimeError("annotate serve did not stop within 15 s of SIGTERM")


def start_browser():
    opts = webdriver.ChromeOptions()
    opts.binary_location = os.environ.get("POSTTRAIN_CHROMIUM", "/usr/bin/chromium")
    for a in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
              "--window-size=1400,1000", "--force-device-scale-factor=1"):
        opts.add_argument(a)
    try:
        driver = os.environ.get("POSTTRAIN_CHROMEDRIVER", "/usr/bin/chromedriver")
        return webdriver.Chrome(service=Service(driver), options=opts)
    except Exception as e:  # no chromium/chromedriver, or it cannot start here
        print(f"SKIP: Chromium cannot start: {type(e).__name__}: {str(e).splitlines()[0]}")
        sys.exit(SKIP)


def keys(driver, *ks):
    ActionChains(driver).send_keys(*ks).perform()


def check(cond, what):
    if not cond:
        raise AssertionError(what)


def current_task(driver):
    return driver.find_element(By.ID, "task-id").text


def wait_next(driver, wait, before):
    """Waits until the page shows another task (or the empty queue)."""
    wait.until(lambda d: (not d.find_element(By.ID, "empty").get_attribute("class").count("hidden"))
               or current_task(d) != before)


def side_of(driver, text):
    a = driver.find_element(By.ID, "resp-a").text
    b = driver.find_element(By.ID, "resp-b").text
    check((text in a) != (text in b), f"{text!r} should be in exactly one response")
    return "a" if text in a else "b"


def annotate(driver, url, token, screenshot):
    wait = WebDriverWait(driver, 20)
    driver.get(url)
    field = wait.until(EC.visibility_of_element_located((By.ID, "token")))
    field.send_keys("0" * 64 + Keys.ENTER)  # a wrong token is refused on the page
    wait.until(lambda d: d.find_element(By.ID, "login-error").text == "That token was not accepted.")
    field = driver.find_element(By.ID, "token")
    field.send_keys(token + Keys.ENTER)
    wait.until(EC.visibility_of_element_located((By.ID, "task")))

    # Task 1: the <script> response is text, the code block is code; choose the C answer, 2.
    wait.until(lambda d: "hello world" in d.find_element(By.ID, "prompt").text)
    check(driver.execute_script("return window.__pwned") is None, "a response's script ran")
    check("<script>window.__pwned = 1</script>" in driver.find_element(By.TAG_NAME, "main").text,
          "the <script> response is not shown as text")
    check(not driver.find_elements(By.CSS_SELECTOR, "#resp-a b, #resp-b b, #resp-a script, #resp-b script"),
          "HTML from a response became elements")
    code = driver.find_elements(By.CSS_SELECTOR, "pre code")
    check(len(code) == 1 and "int main(void)" in code[0].text, "the code block is not shown as code")
    first_choice = side_of(driver, "int main")
    keys(driver, first_choice, "2")
    if screenshot:
        driver.save_screenshot(screenshot)
    before = current_task(driver)
    keys(driver, Keys.ENTER)
    wait_next(driver, wait, before)

    # Task 2: choose "Paris.", 1 (significantly better), edit it (E, select all, type), Ctrl+Enter.
    wait.until(lambda d: "capital of France" in d.find_element(By.ID, "prompt").text)
    check("system" in driver.find_element(By.ID, "prompt").text.lower(), "messages not rendered")
    second_choice = side_of(driver, "Paris.")
    keys(driver, second_choice, "1")
    edit = driver.find_element(By.ID, "edit")
    check(edit.get_attribute("value") == "Paris.", "the edit box is not prefilled with the choice")
    keys(driver, "e")
    check(driver.switch_to.active_element == edit, "E does not focus the edit box")
    ActionChains(driver).key_down(Keys.CONTROL).send_keys("a").key_up(Keys.CONTROL).perform()
    keys(driver, "Paris is the capital of France.")
    before = current_task(driver)
    ActionChains(driver).key_down(Keys.CONTROL).send_keys(Keys.ENTER).key_up(Keys.CONTROL).perform()
    wait_next(driver, wait, before)

    # Task 3: skip with a reason (S, type, Enter).
    wait.until(lambda d: "Fernweh" in d.find_element(By.ID, "prompt").text)
    keys(driver, "s")
    keys(driver, "not sure of the nuance", Keys.ENTER)
    wait.until(EC.visibility_of_element_located((By.ID, "empty")))
    progress = driver.find_element(By.ID, "progress").text
    check(progress == "done today 3 · left in queue 0", f"progress reads {progress!r}")
    return first_choice, second_choice


def check_store(bin_, db):
    lines = run([bin_, "store", "export", "--store", db, "--format", "trl", "--out", "-"]).stdout
    rows = [json.loads(l) for l in lines.splitlines() if l.strip()]
    want = [
        {"prompt": PROMPTS[0]["prompt"], "chosen": PROMPTS[0]["responses"][0],
         "rejected": PROMPTS[0]["responses"][1], "strength": "better"},
        {"prompt": PROMPTS[1]["prompt"], "chosen": "Paris.", "rejected": "It is Lyon.",
         "strength": "significantly_better"},
    ]
    # The export writes one shape per file: as a prompt here is a message list, every text
    # prompt becomes one user message and every text response one assistant message.
    def as_messages(value, role):
        return value if isinstance(value, list) else [{"role": role, "content": value}]
    want = [{"prompt": as_messages(w["prompt"], "user"),
             "chosen": as_messages(w["chosen"], "assistant"),
             "rejected": as_messages(w["rejected"], "assistant"),
             "strength": w["strength"]} for w in want]
    check(rows == want, f"trl export holds {rows}, expected {want}")
    ranked = run([bin_, "store", "export", "--store", db, "--format", "trl", "--expand-rankings",
                  "--out", "-"]).stdout
    pairs = [(r["chosen"], r["rejected"]) for r in map(json.loads, ranked.splitlines())
             if r["prompt"] == PROMPTS[1]["prompt"]]
    edited = "Paris is the capital of France."
    want_pairs = [(edited, "Paris."), (edited, "It is Lyon."), ("Paris.", "It is Lyon.")]
    want_pairs = [(as_messages(a, "assistant"), as_messages(b, "assistant")) for a, b in want_pairs]
    check(pairs == want_pairs,
          f"edited ranking is {pairs}")
    stats = json.loads(run([bin_, "annotate", "stats", "--store", db, "--json"]).stdout)
    check(stats["judgements"] == 2 and stats["skips"] == 1 and stats["edits"] == 1,
          f"stats: {stats}")
    con = sqlite3.connect(db)
    reason = con.execute("SELECT skip_reason FROM judgements WHERE choice IS NULL").fetchall()
    con.close()
    check(reason == [("not sure of the nuance",)], f"skip rows: {reason}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", required=True)
    ap.add_argument("--screenshot", help="save the page (task 1, chosen, before submitting) here")
    ap.add_argument("--keep", action="store_true", help="keep the scratch folder")
    args = ap.parse_args()
    work = tempfile.mkdtemp(prefix="posttrain_browser_")
    driver = start_browser()
    proc = None
    try:
        db, token = make_store(args.bin, work)
        proc, info = start_server(args.bin, db, work)
        check(info["tasks_added"] == 3, f"serve built {info}")
        annotate(driver, info["url"], token, args.screenshot)
    except Exception:
        if proc:
            print(open(os.path.join(work, "serve.err")).read(), file=sys.stderr)
        raise
    finally:
        driver.quit()
        if proc:
            check(stop_server(proc) == 0, "annotate serve exited non-zero")
    check_store(args.bin, db)
    if not args.keep:
        subprocess.run(["rm", "-rf", work])
    print("browser test passed")


if __name__ == "__main__":
    try:
        main()
    except AssertionError as e:
        print(f"FAIL: {e}")
        sys.exit(1)
