"""The closed vocabularies the inventory, the rules table and incident facts share (stdlib only, cheap to import).

Why closed: a data category no rule knows would silently drop every regime that depends on it (the shipped
examples once said ``financial`` and Massachusetts and Texas notices vanished), so anything else is an error.
"""

from __future__ import annotations

from typing import Any

__all__ = ["DATA_CATEGORIES", "ORGANISATION_FACTS", "UnknownCategory", "check_categories"]

#: The closed vocabulary of data categories (inventory ``data:``, rules ``data_any``, incident facts). A category
#: no rule knows would silently drop every regime that depends on it, so anything else is an error.
DATA_CATEGORIES: dict[str, str] = {
    "ssn": "Social Security numbers",
    "drivers_license": "driver's licence / state ID numbers",
    "government_id": "passport / military / tax ID numbers",
    "financial_account": "financial account numbers",
    "payment_card": "payment card numbers",
    "health": "medical / health information",
    "health_insurance": "health-insurance information",
    "biometric": "biometric data",
    "credentials": "usernames with passwords",
    "dob": "dates of birth",
    "tax": "tax records (W-2)",
    "genetic": "genetic data",
    "personal_data": "personal data (GDPR)",
}

#: Organisation facts (``organisation:`` in agent.yaml, overridable per incident): config key -> (rule flag,
#: label). The rules table's ``requires``/``only_if`` name the flags.
ORGANISATION_FACTS: dict[str, tuple[str, str]] = {
    "hipaa_covered_entity": ("hipaa_entity", "HIPAA covered entity or business associate"),
    "glba_financial_institution": ("glba_financial", "financial institution under the GLBA Safeguards Rule (FTC)"),
    "sec_registrant": ("public_company", "SEC registrant (public company)"),
    "health_records_vendor": ("phr_vendor", "vendor of personal health records (FTC Health Breach Rule)"),
    "ny_dfs_licensee": ("dfs_covered", "NY DFS licensee / covered entity (23 NYCRR 500)"),
    "eu_controller": ("eu_controller", "controller within the GDPR's territorial scope"),
}


class UnknownCategory(ValueError):
    """A data category outside :data:`DATA_CATEGORIES`."""


def check_categories(values: Any, *, where: str) -> list[str]:
    """Return ``values`` as a list, or raise :class:`UnknownCategory` naming ``where`` and the known values."""
    found = [str(v) for v in values]
    unknown = [v for v in found if v not in DATA_CATEGORIES]
    if unknown:
        raise UnknownCategory(f"{where}: unknown data categor{'ies' if len(unknown) > 1 else 'y'} "
                              f"{', '.join(repr(u) for u in unknown)} (known: {', '.join(DATA_CATEGORIES)})")
    return found
