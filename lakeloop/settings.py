"""Runtime configuration, read from the environment (and `.env`).

Every service address and credential lives here so that pointing lakeloop at a
real lakeFS, a remote MLflow or a shared Label Studio is configuration only.
Defaults describe the local stack that `lakeloop up` starts on loopback.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal

from pydantic import AliasChoices, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

# The directory holding the lakeloop, tasks, flows and infra packages: the checkout in development,
# site-packages in an installed wheel (never a place to write to; see `shipped`).
ROOT = Path(__file__).resolve().parent.parent
IN_CHECKOUT = (ROOT / "pyproject.toml").is_file()


def shipped(relpath: str) -> Path:
    """A file lakeloop ships beside its code (prefect.yaml, the example spec), by its path in the repository.

    A checkout has it in place; a wheel carries it under lakeloop_shipped/ beside the packages (pyproject's
    force-include), since an installed package has no repository around it. Not inside `lakeloop/`: an
    editable install would then get a real `lakeloop/` directory that shadows the checkout's package.
    """
    packaged = ROOT / "lakeloop_shipped" / relpath
    return packaged if packaged.exists() else ROOT / relpath


def _env(*names: str) -> AliasChoices:
    """Environment names of one setting, first found wins: the service's own variable where it has one, so
    a team configures each address once (Prefect, MLflow and the lakeFS and Label Studio clients read them too)."""
    return AliasChoices(*names)


class LakeFSSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="LAKEFS_", env_file=".env", extra="ignore", populate_by_name=True)

    # lakectl's names too (the lakefs SDK's own configuration)
    endpoint: str = Field(default="http://127.0.0.1:8000",
                          validation_alias=_env("LAKEFS_ENDPOINT", "LAKECTL_SERVER_ENDPOINT_URL"))
    access_key_id: str = Field(default="AKIALAKELOOPLOCAL000",
                               validation_alias=_env("LAKEFS_ACCESS_KEY_ID", "LAKECTL_CREDENTIALS_ACCESS_KEY_ID"))
    # repr=False: a logged settings object (or a Lake in a traceback) shows no secret
    secret_access_key: str = Field(default="lakeloop-local-secret-key-change-me", repr=False, validation_alias=_env(
        "LAKEFS_SECRET_ACCESS_KEY", "LAKECTL_CREDENTIALS_SECRET_ACCESS_KEY"))
    repository: str = "churn"
    default_branch: str = "main"
    storage_namespace: str = "local://lakeloop/churn"
    data_prefix: str = "data/"
    # a read that cannot reach lakeFS (refused, reset, 5xx) is tried again this many times, waiting
    # backoff, 2 x backoff, ... (at most backoff_max) between tries: ~25 s in all by default
    read_retries: int = Field(default=6, ge=0)
    retry_backoff_s: float = Field(default=0.5, ge=0)
    retry_backoff_max_s: float = Field(default=10.0, ge=0)


class MLflowSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="MLFLOW_", env_file=".env", extra="ignore", populate_by_name=True)

    tracking_uri: str = "http://127.0.0.1:5000"  # MLFLOW_TRACKING_URI, MLflow's own
    # MLflow's own MLFLOW_EXPERIMENT_NAME first
    experiment: str = Field(default="lakeloop-churn",
                            validation_alias=_env("MLFLOW_EXPERIMENT_NAME", "MLFLOW_EXPERIMENT"))
    model_name: str = "churn"


class PrefectSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="LAKELOOP_PREFECT_", env_file=".env", extra="ignore",
                                      populate_by_name=True)

    # Prefect's own PREFECT_API_URL first: the flows' Prefect client and lakeloop's event posts must agree
    api_url: str = Field(default="http://127.0.0.1:4200/api",
                         validation_alias=_env("PREFECT_API_URL", "LAKELOOP_PREFECT_API_URL"))
    work_pool: str = "lakeloop"


class LabelStudioSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="LABEL_STUDIO_", env_file=".env", extra="ignore",
                                      populate_by_name=True)

    url: str = "http://127.0.0.1:8080"
    # the Label Studio SDK's LABEL_STUDIO_API_KEY too
    api_token: str = Field(default="lakeloop0local0label0studio0token0000001", repr=False,
                           validation_alias=_env("LABEL_STUDIO_API_TOKEN", "LABEL_STUDIO_API_KEY"))
    username: str = "admin@lakeloop.local"
    password: str = Field(default="lakeloop-admin", repr=False)


class LabelingSettings(BaseSettings):
    """How many rows a review round may send, and when the team's answers change a label."""

    model_config = SettingsConfigDict(env_prefix="LAKELOOP_LABELING_", env_file=".env", extra="ignore")

    # false when this deployment has no Label Studio (`demo --data` without truth): review rounds are skipped
    # with a reason, instead of failing after every registered model
    enabled: bool = True
    budget: int = 300
    # unfinished tasks the team may have at once (None: one budget); a round only tops the queue up
    max_open_tasks: int | None = None
    project_title: str = "lakeloop label review"
    # a row's consensus (CROWDLAB over every answer and the model) is judged once it has this many answers
    # (Label Studio's overlap) ...
    min_annotators: int = 2
    # ... and accepted when its quality reaches this; below it, the row goes to one more annotator ...
    min_consensus_quality: float = 0.7
    # ... up to this many; a row still unsure then stays flagged (disputed), its data unchanged.
    max_annotators: int = 3
    # One of these reviewers' (e-mail) answer settles a row alone.
    trusted_reviewers: list[str] = []
    # corrections are committed in batches of at least this many (a forced intake commits any number)
    min_corrections_per_commit: int = 25


# Published in this repository, so only for servers nobody else can reach (see `check_secrets`).
LOCAL_LAKEFS_HOOK_SECRET = "lakeloop-local-lakefs-hook-secret"
LOCAL_LABEL_STUDIO_HOOK_SECRET = "lakeloop-local-label-studio-hook-secret"
# before each sender had its own secret, one variable held the secret of both; still read, for both, if the new
# ones are unset (deprecated: `check_secrets` refuses one secret for both senders off loopback)
DEPRECATED_BRIDGE_SECRET_ENV = "LAKELOOP_BRIDGE_SECRET"


class BridgeSettings(BaseSettings):
    """Where the bridge listens for webhooks, and the secret each sender authenticates with.

    lakeFS and Label Studio each get their own secret, accepted only on their own endpoints: a Label Studio
    admin can read the Label Studio one in the project's webhook settings, and it must not let them fake a
    lakeFS commit. A secret's value may be a Prefect Secret block reference, `{{ prefect.blocks.secret.NAME }}`.
    """

    model_config = SettingsConfigDict(env_prefix="LAKELOOP_BRIDGE_", env_file=".env", extra="ignore",
                                      populate_by_name=True)

    url: str = "http://127.0.0.1:8765"
    lakefs_secret: SecretStr = Field(default=SecretStr(LOCAL_LAKEFS_HOOK_SECRET), validation_alias=_env(
        "LAKELOOP_BRIDGE_LAKEFS_SECRET", DEPRECATED_BRIDGE_SECRET_ENV))
    label_studio_secret: SecretStr = Field(default=SecretStr(LOCAL_LABEL_STUDIO_HOOK_SECRET), validation_alias=_env(
        "LAKELOOP_BRIDGE_LABEL_STUDIO_SECRET", DEPRECATED_BRIDGE_SECRET_ENV))
    # an HMAC-signed request must be signed within this many seconds of its arrival (either way): a captured
    # request replayed later is refused
    replay_window_s: float = 300.0
    # seconds without a new Label Studio answer before the bridge announces the gathered answers
    labels_quiet_s: float = 10.0


class DriftSettings(BaseSettings):
    """Thresholds for whylogs' per-column drift algorithms and the dataset decision."""

    model_config = SettingsConfigDict(env_prefix="LAKELOOP_DRIFT_", env_file=".env", extra="ignore")

    # p-value under which a column counts as drifted (whylogs' DRIFT category bound). With a dozen
    # features tested per commit, 0.05 would flag about every second clean batch somewhere; 0.01 with
    # at least two columns keeps false retrains well under 1% per commit.
    drift_pvalue: float = 0.01
    # p-value under which a column counts as possibly drifted (reported, never a retrain by itself).
    possible_drift_pvalue: float = 0.05
    # retrain when at least this share of features drifted ...
    min_drifted_share: float = 0.25
    # ... or at least this many features drifted.
    min_drifted_columns: int = 2
    # Effect-size floors: at large n, sketch error alone gives tiny p-values, so a column must also move
    # by at least this KS statistic (numeric) or Cohen's w (categorical) to count as drifted.
    min_ks_statistic: float = 0.01
    min_chi2_effect: float = 0.01


class TrainSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="LAKELOOP_TRAIN_", env_file=".env", extra="ignore")

    folds: int = 5
    seed: int = 42
    n_estimators: int = 400
    early_stopping_rounds: int = 30
    learning_rate: float = 0.08
    max_depth: int = 5
    n_jobs: int = 2


class EnsembleSettings(BaseSettings):
    """Budget of the candidate search behind `build-ensemble`."""

    model_config = SettingsConfigDict(env_prefix="LAKELOOP_ENSEMBLE_", env_file=".env", extra="ignore")

    trials: int = 20
    timeout_s: float = 300.0
    folds: int = 5
    voting: str = "weighted"  # hard | soft | weighted


def _split_list(value: object) -> object:
    """`a,b` or a JSON list from the environment; a list from code."""
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("["):
            import json

            return json.loads(text)
        return [v.strip() for v in text.split(",") if v.strip()]
    return value


class BranchSettings(BaseSettings):
    """Which lakeFS branches drive production, and which are experiments (see lakeloop.branches)."""

    model_config = SettingsConfigDict(env_prefix="LAKELOOP_BRANCHES_", env_file=".env", extra="ignore")

    # branches whose commits may retrain and promote `champion` (empty: the repository's default branch)
    watched: Annotated[list[str], NoDecode] = []
    # glob patterns (fnmatch) of branches whose commits run an experiment: train a candidate, judge it on
    # the watched branch's holdout, report; never an alias. Empty: other branches start nothing.
    experiments: Annotated[list[str], NoDecode] = []
    # the pre-merge hook on a watched branch refuses a merge from an experiment branch whose latest
    # experiment verdict is `worse` (or still pending): data CI
    block_worse_merges: bool = False

    _split = field_validator("watched", "experiments", mode="before")(_split_list)


class GateSettings(BaseSettings):
    """How much evidence a challenger needs before it replaces the champion (see tasks.model.gate)."""

    model_config = SettingsConfigDict(env_prefix="LAKELOOP_GATE_", env_file=".env", extra="ignore")

    # non-inferiority margin: the lower confidence bound of (challenger - best champion) AUC must be >= -margin
    auc_margin: float = 0.01
    # the same for business value per row, as a share of |best champion's value|
    business_margin: float = 0.05
    confidence: float = 0.95
    bootstrap_resamples: int = 1000
    seed: int = 20260101
    # past champions scored on the same rows; the best of them is the bar (successive promotions cannot slide)
    past_champions: int = 5
    # rows new since the champion's data must carry label signal: challenger's AUC lower bound > 0.5
    min_signal_rows: int = 100
    # `approval`: a challenger that passed the gate waits (paused in the Prefect UI) for a person's approve or
    # reject; no answer within `approval_timeout_s` counts as reject. `auto`: the gate alone decides.
    promotion_policy: Literal["auto", "approval"] = "auto"
    approval_timeout_s: int = 86400


class NotifySettings(BaseSettings):
    """Where `lakeloop deploy`'s automations send notifications (a Slack-compatible webhook; unset: none)."""

    model_config = SettingsConfigDict(env_prefix="LAKELOOP_NOTIFY_", env_file=".env", extra="ignore")

    webhook_url: str | None = None


class MonitorSettings(BaseSettings):
    """How sure the monitor must be before it calls a batch drifted and asks for a retrain (flows/monitor.py)."""

    model_config = SettingsConfigDict(env_prefix="LAKELOOP_MONITOR_", env_file=".env", extra="ignore")

    # share of stationary batches that may be flagged; split evenly over the signals tested (Bonferroni)
    false_alarm_rate: float = 0.05
    # prediction drift also needs the KS statistic of the outputs to reach this (large batches, tiny shifts)
    min_output_ks: float = 0.05
    # a realized (labels) or estimated (CBPE) AUC drop beyond this retrains
    auc_tolerance: float = 0.03
    # after a retrain request, further alarms on the same champion are reported but request none for this long
    cooldown_hours: float = 24.0
    # batches shown in the monitor report's history
    history: int = 20


class Settings(BaseSettings):
    """Top-level settings; sub-sections read their own env prefixes."""

    model_config = SettingsConfigDict(env_prefix="LAKELOOP_", env_file=".env", extra="ignore")

    # an installed package keeps its state in the user's home, never in site-packages
    home: Path = Field(default=ROOT / ".lakeloop" if IN_CHECKOUT else Path.home() / ".lakeloop",
                       description="State, logs and server data of the local stack.")
    spec_path: Path = shipped("examples/churn/spec.yaml")
    state_url: str | None = Field(
        default=None,
        description="SQLAlchemy URL of lakeloop's own state (delivery ledger, retrain claims, outboxes, label "
                    "ledgers), e.g. postgresql+psycopg://user@host/prefect to share it across bridge and worker "
                    "hosts (tables in the `lakeloop` schema); unset: one SQLite file per store under state_dir.")
    lakefs: LakeFSSettings = Field(default_factory=LakeFSSettings)
    mlflow: MLflowSettings = Field(default_factory=MLflowSettings)
    prefect: PrefectSettings = Field(default_factory=PrefectSettings)
    label_studio: LabelStudioSettings = Field(default_factory=LabelStudioSettings)
    bridge: BridgeSettings = Field(default_factory=BridgeSettings)
    labeling: LabelingSettings = Field(default_factory=LabelingSettings)
    ensemble: EnsembleSettings = Field(default_factory=EnsembleSettings)
    drift: DriftSettings = Field(default_factory=DriftSettings)
    monitor: MonitorSettings = Field(default_factory=MonitorSettings)
    train: TrainSettings = Field(default_factory=TrainSettings)
    branches: BranchSettings = Field(default_factory=BranchSettings)
    gate: GateSettings = Field(default_factory=GateSettings)
    notify: NotifySettings = Field(default_factory=NotifySettings)

    @model_validator(mode="after")
    def _names_from_spec(self) -> Settings:
        return self._name_after_the_dataset()

    def _name_after_the_dataset(self) -> Settings:
        """Repository (and its storage namespace), experiment and registered model are named after the spec's
        dataset (`churn` for the worked example), so `LAKELOOP_SPEC_PATH` alone points every process at one dataset;
        a value set explicitly (environment or code) wins."""
        name = dataset_slug(self.spec_path)
        if name is None:
            return self
        repository = self.lakefs.repository if "repository" in self.lakefs.model_fields_set else name
        derived = {"lakefs": {"repository": repository, "storage_namespace": f"local://lakeloop/{repository}"},
                   "mlflow": {"model_name": name, "experiment": f"lakeloop-{name}"}}
        for section, values in derived.items():
            current: BaseSettings = getattr(self, section)
            copy = current.model_copy()
            # through __dict__: neither a set field (the next derivation may change it) nor a shared sub-model
            copy.__dict__.update({k: v for k, v in values.items() if k not in current.model_fields_set})
            self.__dict__[section] = copy
        return self

    def for_spec(self, spec_path: Path) -> Settings:
        """These settings for another dataset spec, its names derived again (unless set explicitly)."""
        return self.model_copy(update={"spec_path": spec_path})._name_after_the_dataset()

    @property
    def state_dir(self) -> Path:
        return self.home / "state"

    @property
    def log_dir(self) -> Path:
        return self.home / "logs"


def dataset_slug(spec_path: Path) -> str | None:
    """The spec's `name` as a lakeFS repository id (lowercase letters, digits, dashes); None when the file
    cannot tell (missing or invalid: loading the spec reports that properly)."""
    import re

    import yaml

    try:
        raw = yaml.safe_load(Path(spec_path).read_text())
    except (OSError, yaml.YAMLError):
        return None
    name = raw.get("name") if isinstance(raw, dict) else None
    if not isinstance(name, str):
        return None
    slug = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")
    return slug if len(slug) >= 3 else None


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()


class InsecureSecrets(RuntimeError):
    """Published default secrets (or one secret for both webhook senders) on servers others can reach."""


def _published_secrets() -> set[str]:
    """The defaults this repository publishes: fine on loopback, where nobody else can use them."""
    fields = [LakeFSSettings.model_fields["secret_access_key"], LabelStudioSettings.model_fields["api_token"],
              LabelStudioSettings.model_fields["password"], BridgeSettings.model_fields["lakefs_secret"],
              BridgeSettings.model_fields["label_studio_secret"]]
    return {f.default.get_secret_value() if isinstance(f.default, SecretStr) else str(f.default) for f in fields}


def is_published_secret(value: str) -> bool:
    """A default this repository publishes, or a `change-me…` placeholder of `infra/.env.example`."""
    return value in _published_secrets() or value.lower().startswith("change-me")


def configured_secrets(s: Settings) -> dict[str, str]:
    """Every secret lakeloop is configured with, by its environment name, as configured (a Prefect Secret
    block reference stays a reference: `lakeloop.adapters.secrets.reveal` reads it)."""
    return {
        "LAKEFS_SECRET_ACCESS_KEY": s.lakefs.secret_access_key,
        "LABEL_STUDIO_API_TOKEN": s.label_studio.api_token,
        "LABEL_STUDIO_PASSWORD": s.label_studio.password,
        "LAKELOOP_BRIDGE_LAKEFS_SECRET": s.bridge.lakefs_secret.get_secret_value(),
        "LAKELOOP_BRIDGE_LABEL_STUDIO_SECRET": s.bridge.label_studio_secret.get_secret_value(),
    }


def is_loopback(host: str | None) -> bool:
    import ipaddress

    if not host:
        return False
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def reachable_servers(s: Settings, bind_hosts: tuple[str, ...] = ()) -> list[str]:
    """The configured servers (and addresses this process binds) that are not on loopback."""
    from urllib.parse import urlsplit

    urls = {"LAKEFS_ENDPOINT": s.lakefs.endpoint, "MLFLOW_TRACKING_URI": s.mlflow.tracking_uri,
            "PREFECT_API_URL": s.prefect.api_url, "LABEL_STUDIO_URL": s.label_studio.url,
            "LAKELOOP_BRIDGE_URL": s.bridge.url}
    return ([f"{name}={url}" for name, url in urls.items() if not is_loopback(urlsplit(url).hostname)]
            + [f"listening on {h}" for h in bind_hosts if not is_loopback(h)])


def check_secrets(s: Settings, bind_hosts: tuple[str, ...] = ()) -> None:
    """Refuse to start with a published default secret, a `change-me` placeholder, or one secret shared by
    lakeFS and Label Studio, unless every server (and every address this process binds) is on loopback.

    Raises `InsecureSecrets` naming each offending variable (never its value)."""
    import logging
    import os

    if DEPRECATED_BRIDGE_SECRET_ENV in os.environ:
        logging.getLogger("lakeloop.settings").warning(
            "%s is deprecated: set LAKELOOP_BRIDGE_LAKEFS_SECRET and LAKELOOP_BRIDGE_LABEL_STUDIO_SECRET, one "
            "secret per sender", DEPRECATED_BRIDGE_SECRET_ENV)
    exposed = reachable_servers(s, bind_hosts)
    if not exposed:
        return
    published = _published_secrets()
    problems = [f"{name} is {'the published local default' if value in published else 'a change-me placeholder'}"
                for name, value in configured_secrets(s).items() if is_published_secret(value)]
    if s.bridge.lakefs_secret.get_secret_value() == s.bridge.label_studio_secret.get_secret_value():
        problems.append("LAKELOOP_BRIDGE_LAKEFS_SECRET and LAKELOOP_BRIDGE_LABEL_STUDIO_SECRET are one secret "
                        f"(the deprecated {DEPRECATED_BRIDGE_SECRET_ENV} sets both): a Label Studio admin could "
                        "fake lakeFS commits")
    if problems:
        raise InsecureSecrets(
            f"refusing to start: {'; '.join(problems)}. Set each in the environment (or as a Prefect Secret block, "
            f"'{{{{ prefect.blocks.secret.NAME }}}}'), or keep every server on loopback (not: {', '.join(exposed)})")
