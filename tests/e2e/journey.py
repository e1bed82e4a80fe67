"""Browser steps shared by the end-to-end tests: sign in and buy through the wizard."""

from __future__ import annotations

import re
from typing import Any

from tests.factories import PASSWORD


def buy_through_wizard(
    page: Any,
    url: str,
    sandbox: Any,
    shoot: Any,
    *,
    email: str,
    prefix: str = "",
    password: str = PASSWORD,
) -> list[str]:
    """Sign in as ``email``, complete the four wizard steps and pay; return the chosen domains."""
    # Sign in.
    page.goto(f"{url}/dashboard")
    page.wait_for_url(
        re.compile(r".*/auth/login\?next=%2Fdashboard$|.*/auth/login\?next=/dashboard$")
    )
    shoot(page, prefix + "01-login")
    page.fill("input[name=email]", email)
    page.fill("input[name=password]", password)
    page.click("button:has-text('Sign in')")

    # 1. Package.
    page.wait_for_url("**/wizard/package")
    shoot(page, prefix + "02-wizard-package")
    page.click("label.tier-card:has-text('Starter')")
    page.click("button:has-text('Continue to domains')")

    # 2. Domains: brand suggestions with live availability and price.
    page.wait_for_url("**/wizard/domains")
    page.fill("input[name=brand]", "Northwind Labs")
    page.click("button:has-text('Suggest domains')")
    page.wait_for_selector("li.domain-row")
    assert page.locator("li.domain-row").count() == 20
    for _ in range(3):
        page.locator("li.domain-row button:has-text('Add'):not([disabled])").first.click()
        page.wait_for_load_state()
    assert page.locator("ul.chosen li").count() == 3
    chosen = [t.strip() for t in page.locator("ul.chosen li > span").all_inner_texts()]
    shoot(page, prefix + "03-wizard-domains")
    page.click("button:has-text('Continue')")

    # 3. Mailboxes with the preview grid.
    page.wait_for_url("**/wizard/mailboxes")
    page.fill("input[name=first_name]", "Jordan")
    page.fill("input[name=last_name]", "Reyes")
    page.select_option("select[name=pattern_1]", "{first}.{last}")
    page.click("button:has-text('Update preview')")
    page.wait_for_selector("table.preview-grid")
    assert f"jordan.reyes@{chosen[0]}" in page.inner_text("table.preview-grid")
    shoot(page, prefix + "04-wizard-mailboxes")
    page.click("button:has-text('Continue to review')")

    # 4. Review and pay on the sandbox's hosted checkout page.
    page.wait_for_url("**/wizard/review")
    assert "$144" in page.inner_text(".totals")
    shoot(page, prefix + "05-wizard-review")
    page.click("button:has-text('securely')")
    page.wait_for_url(f"{sandbox.stripe_url}/checkout/**")
    shoot(page, prefix + "06-sandbox-checkout")
    page.click("button[value=card]")

    return chosen
