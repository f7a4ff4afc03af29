#!/usr/bin/python3
"""Drives `ablate serve`'s pages in headless Chromium (Debian's chromium and
chromium-driver, through python3-selenium) for cli/serve_test and
bench/serve_bench.sh. Each mode prints one JSON line per observation.

  live URL GO_FILE   load URL and print READY with the learning curves'
                     state; once GO_FILE exists, wait for the curves to
                     change in place and print CHANGED with their new state
                     and whether the page was reloaded meanwhile
  login URL TOKEN    sign in with a wrong token, then with TOKEN; print LOGIN
                     with what the pages said
  timing URL         load URL and print TIMING: milliseconds from navigation
                     to DOM interactive, to load, and to the first live update
"""
import json
import os
import sys
import time

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

TIMEOUT_S = 90


def browser():
    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--no-first-run", "--disable-background-networking", "--window-size=1280,2000"):
        options.add_argument(flag)
    return webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)


def say(kind, **fields):
    print(kind, json.dumps(fields, sort_keys=True), flush=True)


def curves_state(driver):
    return driver.execute_script("""
        var section = document.getElementById("section-curves");
        var legends = section ? Array.prototype.map.call(
            section.querySelectorAll(".legend li"), function (li) { return li.textContent; }) : [];
        return {
          hash: section ? section.getAttribute("data-hash") : null,
          legend: legends,
          lines: section ? section.querySelectorAll("path.line").length : 0,
          updates: parseInt(document.body.getAttribute("data-live-updates") || "0", 10),
          state: document.body.getAttribute("data-live-state"),
          marker: window.__servedOnce === true,
          counts: (document.getElementById("counts") || {}).textContent || ""
        };""")


def live(url, go_file):
    driver = browser()
    try:
        driver.get(url)
        WebDriverWait(driver, TIMEOUT_S).until(
            lambda d: d.execute_script("return document.body.getAttribute('data-live-state')")
            == "live" and curves_state(d)["lines"] > 0)
        # Survives only as long as the page is not reloaded.
        driver.execute_script("window.__servedOnce = true;")
        before = curves_state(driver)
        say("READY", **before)
        deadline = time.time() + TIMEOUT_S
        while not os.path.exists(go_file) and time.time() < deadline:
            time.sleep(0.1)
        WebDriverWait(driver, TIMEOUT_S).until(
            lambda d: curves_state(d)["hash"] != before["hash"])
        say("CHANGED", **curves_state(driver))
    finally:
        driver.quit()


def login(url, token):
    driver = browser()
    try:
        driver.get(url)
        first = driver.find_element(By.TAG_NAME, "h1").text

        def submit(value):
            field = driver.find_element(By.NAME, "token")
            field.clear()
            field.send_keys(value)
            driver.find_element(By.CSS_SELECTOR, "form.login button").click()

        submit("not-the-token")
        WebDriverWait(driver, TIMEOUT_S).until(lambda d: d.find_elements(By.ID, "message"))
        refused = driver.find_element(By.ID, "message").text
        submit(token)
        WebDriverWait(driver, TIMEOUT_S).until(lambda d: d.find_elements(By.ID, "section-curves"))
        say("LOGIN", first=first, refused=refused, title=driver.title,
            figures=len(driver.find_elements(By.CSS_SELECTOR, "#section-curves svg")))
    finally:
        driver.quit()


def timing(url):
    driver = browser()
    try:
        driver.get(url)
        WebDriverWait(driver, TIMEOUT_S).until(lambda d: d.execute_script(
            "return performance.getEntriesByType('navigation')[0].loadEventEnd > 0"))
        navigation = driver.execute_script(
            "var n = performance.getEntriesByType('navigation')[0];"
            "return {interactive: n.domInteractive, loaded: n.loadEventEnd,"
            " response: n.responseEnd, bytes: n.transferSize};")
        say("TIMING", **navigation)
    finally:
        driver.quit()


def main(argv):
    if len(argv) == 4 and argv[1] == "live":
        live(argv[2], argv[3])
    elif len(argv) == 4 and argv[1] == "login":
        login(argv[2], argv[3])
    elif len(argv) == 3 and argv[1] == "timing":
        timing(argv[2])
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main(sys.argv)
