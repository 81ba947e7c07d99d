"""Debian's Chromium, driven by Playwright (its own browser download cannot
run here). The flags keep it off the network this machine does not have."""

import os

__all__ = ["CHROMIUM", "CHROMIUM_ARGS", "browse"]

CHROMIUM = os.environ.get("PRESENCE_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]


async def browse(scenario):
    """Run ``scenario(context)`` in a fresh headless Chromium (launch()
    gives it a fresh temporary profile), closed afterwards."""
    from playwright.async_api import async_playwright

    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM,
                                                   args=CHROMIUM_ARGS)
        try:
            await scenario(await browser.new_context())
        finally:
            await browser.close()
