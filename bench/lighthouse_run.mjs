// Lighthouse (Node API, navigation mode) over the buyer pages, driven by
// puppeteer-core in Debian's Chromium. Called by bench/lighthouse.py:
//   node bench/lighthouse_run.mjs <job.json>
// job: {modules, chrome, preset: "mobile"|"desktop", reports, pages: [
//   {name, url, expect: css selector, prepare?: [url, ...], submit?: css selector}]}
// A page with ``prepare`` is opened after those URLs in the same browser
// context (a signed link grants the order to the session); with ``submit``,
// the measured navigation is the POST that pressing that button sends (the
// checkout answering with its errors). Prints one JSON line per page.
import fs from 'node:fs';
import path from 'node:path';
import {pathToFileURL} from 'node:url';

const job = JSON.parse(fs.readFileSync(process.argv[2], 'utf8'));
const load = (name, file) => import(pathToFileURL(path.join(job.modules, name, file)).href);
const {navigation, desktopConfig, generateReport} = await load('lighthouse', 'core/index.js');
const puppeteer = (await load('puppeteer-core', 'lib/esm/puppeteer/puppeteer-core.js')).default;

const categories = ['accessibility', 'seo', 'best-practices'];
const config = job.preset === 'desktop'
  ? {...desktopConfig, settings: {...desktopConfig.settings, onlyCategories: categories}}
  : {extends: 'lighthouse:default', settings: {onlyCategories: categories}};

const browser = await puppeteer.launch({
  executablePath: job.chrome, headless: false,
  args: ['--headless=new', '--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-sync',
         '--disable-background-networking', '--disable-component-update', '--disable-dev-shm-usage'],
});
try {
  for (const spec of job.pages) {
    const context = await browser.createBrowserContext();  // no cookies from another page
    const page = await context.newPage();
    for (const url of spec.prepare || []) {
      const response = await page.goto(url, {waitUntil: 'load'});
      if (!response.ok()) throw new Error(`${spec.name}: ${url} answered ${response.status()}`);
    }
    const requestor = spec.submit ? async () => { await page.click(spec.submit); } : spec.url;
    // Keeping storage keeps the session and CSRF cookies the preparation set.
    const flags = {disableStorageReset: Boolean(spec.prepare), logLevel: 'error'};
    const result = await navigation(page, requestor, {config, flags});
    const lhr = result.lhr;
    // The page measured is the one meant (not a 404, a 403 CSRF page or an unstyled page).
    const shown = await page.evaluate((selector) => ({
      found: document.querySelectorAll(selector).length,
      styled: getComputedStyle(document.querySelector('.skip')).position === 'absolute',
    }), spec.expect);
    if (!shown.found || !shown.styled) throw new Error(`${spec.name}: ${JSON.stringify(shown)} at ${page.url()}`);
    fs.mkdirSync(job.reports, {recursive: true});
    fs.writeFileSync(path.join(job.reports, `${job.preset}-${spec.name}.html`), generateReport(lhr, 'html'));
    const failed = [];
    for (const category of categories) {
      for (const ref of lhr.categories[category].auditRefs) {
        const audit = lhr.audits[ref.id];
        if (ref.weight > 0 && audit.score !== null && audit.score < 1) {
          failed.push({category, id: ref.id, weight: ref.weight, score: audit.score, title: audit.title});
        }
      }
    }
    console.log(JSON.stringify({
      name: spec.name, preset: job.preset, url: lhr.finalDisplayedUrl, lighthouse: lhr.lighthouseVersion,
      userAgent: lhr.environment.hostUserAgent, warnings: lhr.runWarnings,
      scores: Object.fromEntries(categories.map(c => [c, Math.round(lhr.categories[c].score * 100)])),
      failed,
    }));
    await context.close();
  }
} finally {
  await browser.close();
}
