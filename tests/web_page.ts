/**
 * The web page in a real browser, as tests drive it: Debian's Chromium through
 * playwright-core, and what someone at the page does (log in, search and
 * select, read the state line and the video). Used by tests/web_test.ts, and by
 * the cluster drill on its client host (tests/cluster_drill.ts).
 *
 * @module
 */
import { chromium, type Page } from "playwright-core";

export type { Page };

/** Debian's Chromium, headless, with the flags it needs in this closed network (and as root) and a new profile. */
export async function openPage(url: string): Promise<{ page: Page; close: () => Promise<void> }> {
  const profile = await Deno.makeTempDir({ prefix: "iceflix-chromium-" });
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: "/usr/bin/chromium",
    headless: true,
    args: [
      ...["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking"],
      ...["--disable-component-update", "--disable-sync"],
    ],
  });
  const page = await context.newPage();
  await page.goto(url);
  await page.locator("#state").filter({ hasText: /^connected/ }).waitFor();
  return {
    page,
    close: async () => {
      await context.close();
      await Deno.remove(profile, { recursive: true });
    },
  };
}

/** Logs in as someone at the page would. */
export async function logIn(page: Page, user: string, password: string): Promise<void> {
  await page.fill("#user", user);
  await page.fill("#password", password);
  await page.click("#login-button");
  await page.locator("#state").filter({ hasText: `user ${user}` }).waitFor();
}

/** Searches `name` and selects the result of that name. */
export async function select(page: Page, name: string): Promise<void> {
  await page.fill("#query", name);
  await page.selectOption("#mode", "name");
  await page.click("#search-button");
  await page.locator("#results li", { hasText: name }).click();
  await page.locator("#state").filter({ hasText: `selected «${name}»` }).waitFor();
}

/** The page's state line. */
export const state = (page: Page) => page.textContent("#state");
/** A property of the page's `<video>` element (evaluated in the page: the test has no DOM types). */
export const videoProperty = <T>(page: Page, name: "currentTime" | "currentSrc" | "paused") =>
  page.evaluate<T>(`document.querySelector("video").${name}`);
/** Where the page's video is, in seconds. */
export const currentTime = (page: Page) => videoProperty<number>(page, "currentTime");
