"""`ringback migrate`: every component's Alembic history, each in its own schema."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from alembic import command
from alembic.config import Config

# Order matters only for readability of the log; components never reference each other.
COMPONENTS: dict[str, str] = {
    "auth": "shared.auth_migrations",
    "intake": "services.intake.migrations",
    "callback": "services.callback.migrations",
    "history": "services.history.migrations",
}


def alembic_config(component: str, database_url: str) -> Config:
    """An Alembic config for one component, without an ini file on disk."""
    package = COMPONENTS[component]
    location = Path(str(resources.files(package)))
    config = Config()
    config.set_main_option("script_location", str(location))
    config.set_main_option("path_separator", "os")
    config.attributes["url"] = database_url
    return config


def upgrade(database_url: str, components: list[str] | None = None) -> None:
    """Bring the chosen (default: all) components to their newest revision in one database."""
    for component in components or list(COMPONENTS):
        command.upgrade(alembic_config(component, database_url), "head")


def upgrade_all(urls: dict[str, str]) -> None:
    """Migrate each service in its database, and the API-key store in every one of them."""
    by_database: dict[str, list[str]] = {}
    for service, url in urls.items():
        by_database.setdefault(url, ["auth"]).append(service)
    for url, components in by_database.items():
        upgrade(url, components)
