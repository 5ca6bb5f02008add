"""The demo's example models, the synthetic data they train on, and the policy it starts with.

The models are built so that a review has something to find: a challenger that is better, one
that silently drops an input column, and one that is clearly worse.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

FRAUD_FEATURES = ("amount", "merchant_risk", "hour", "distance_km", "card_age_days", "n_tx_24h")


@dataclass(frozen=True)
class VersionSpec:
    """One training run that becomes one registered model version."""

    run_name: str
    author: str
    kind: str  # "linear" | "forest" | "boosting"
    params: dict[str, Any]
    dataset: str
    description: str
    features: tuple[str, ...] | None = None  # None: every feature of the model's data set
    train_rows: int | None = None  # None: the whole training split
    stage: str | None = None
    aliases: tuple[str, ...] = ()
    validation: str | None = None


@dataclass(frozen=True)
class ModelSpec:
    """A registered model, the experiment its runs live in, and its versions in order."""

    name: str
    experiment: str
    task: str  # "classification" | "regression"
    description: str
    tags: dict[str, str]
    versions: tuple[VersionSpec, ...] = field(default_factory=tuple)


# fraud-detector, the model the walkthrough promotes, uses aliases only: MLflow's model page shows
# aliases and hides stages behind its "New model registry UI" switch, so a stage there would be
# invisible and, once @champion moved, stale. churn-model keeps the older stages, for that view.
MODELS: tuple[ModelSpec, ...] = (
    ModelSpec(
        name="fraud-detector",
        experiment="fraud-detection",
        task="classification",
        description="Scores card transactions for fraud; the payment service blocks scores above 0.8.",
        tags={"team": "risk-ml", "owner": "maria.chen", "tier": "critical"},
        versions=(
            VersionSpec(
                "rf-depth8",
                "maria.chen",
                "forest",
                {"n_estimators": 100, "max_depth": 8},
                "transactions-2025-09",
                "Random forest, 100 trees of depth 8. Serving since September.",
                aliases=("champion",),
                validation="passed",
            ),
            VersionSpec(
                "gbm-200",
                "sam.okafor",
                "boosting",
                {"n_estimators": 200, "learning_rate": 0.05, "max_depth": 3},
                "transactions-2025-10",
                "Gradient boosting, 200 shallow trees, retrained on October data.",
                aliases=("challenger",),
                validation="passed",
            ),
            VersionSpec(
                "gbm-no-geo",
                "sam.okafor",
                "boosting",
                {"n_estimators": 200, "learning_rate": 0.05, "max_depth": 3},
                "transactions-2025-10",
                "Same as gbm-200 without distance_km (privacy review asked to drop geo).",
                features=tuple(f for f in FRAUD_FEATURES if f != "distance_km"),
            ),
            VersionSpec(
                "gbm-quick-retrain",
                "lee.park",
                "boosting",
                {"n_estimators": 20, "learning_rate": 0.1, "max_depth": 1},
                "transactions-2025-10-w4",
                "Quick retrain on the last week of October only.",
                train_rows=400,
            ),
        ),
    ),
    ModelSpec(
        name="churn-model",
        experiment="customer-churn",
        task="classification",
        description="Probability that a subscriber cancels within 30 days; feeds the retention campaign.",
        tags={"team": "growth-analytics", "owner": "ana.silva", "tier": "standard"},
        versions=(
            VersionSpec(
                "churn-logreg",
                "ana.silva",
                "linear",
                {"alpha": 1e-4, "epochs": 6},
                "subscribers-2025-q2",
                "Logistic regression on account features.",
                stage="Archived",
            ),
            VersionSpec(
                "churn-rf",
                "ana.silva",
                "forest",
                {"n_estimators": 80, "max_depth": 6},
                "subscribers-2025-q3",
                "Random forest; adds support tickets and last login.",
                stage="Production",
                validation="passed",
            ),
            VersionSpec(
                "churn-gbm",
                "ana.silva",
                "boosting",
                {"n_estimators": 150, "learning_rate": 0.08, "max_depth": 3},
                "subscribers-2025-q3",
                "Gradient boosting candidate.",
                stage="Staging",
            ),
        ),
    ),
    ModelSpec(
        name="demand-forecast",
        experiment="demand-forecasting",
        task="regression",
        description="Daily units sold per store and product family; drives replenishment orders.",
        tags={"team": "supply-chain-ds", "owner": "raj.iyer", "tier": "standard"},
        versions=(
            VersionSpec(
                "demand-linear",
                "raj.iyer",
                "linear",
                {"alpha": 1e-4, "epochs": 6},
                "sales-2025-h1",
                "Linear model on calendar, price and promo features.",
            ),
            VersionSpec(
                "demand-gbm",
                "raj.iyer",
                "boosting",
                {"n_estimators": 150, "learning_rate": 0.1, "max_depth": 3},
                "sales-2025-h1",
                "Gradient boosting; captures the promo x weekend effect.",
                aliases=("champion",),
                validation="passed",
            ),
            VersionSpec(
                "demand-rf",
                "lee.park",
                "forest",
                {"n_estimators": 100, "max_depth": 10},
                "sales-2025-q3",
                "Random forest on fresher data.",
                aliases=("challenger",),
            ),
        ),
    ),
)

# MLflow's recommended environment separation: one registered model per environment, filled by
# copying a reviewed version across (``copy_model_version`` = the UI's "Promote model").
PROD_COPY = "prod.fraud-detector"
PROD_COPY_SOURCE = "models:/fraud-detector@champion"
DEMO_MODEL_NAMES = (*(m.name for m in MODELS), PROD_COPY)


# The demo's policy: promoting fraud-detector is gated on its validation AUC against the champion
# and on a signature the payment service can still call, so version 2 passes, version 3 (drops an
# input column) fails the signature check and version 4 (worse) fails the metric gate. A verified
# rollback (a version that held @champion through a reviewed request, same files) needs one
# approval, which on-call may give themselves. The freeze is written relative to the demo's start:
# a one-off window on demand-forecast's champion, so it can be watched ending. churn-model's
# champion is the pipeline's (scripts/demo-pipeline): its rule waits for CI's ci/eval status.
ON_CALL = "lee.park"  # the demo's admin: break-glass in the seeded history
# The pipeline of scripts/demo-pipeline: its account, the model and target it promotes, the status
# it posts, and the reviewer who approves with a token of their own (so given the review scope).
PIPELINE_USER = "ci-bot"
PIPELINE_MODEL = "churn-model"
PIPELINE_ALIAS = "champion"
PIPELINE_STATUS = "ci/eval"
PIPELINE_REVIEWER = "ana.silva"
TOKEN_ELEVATED_USERS = (PIPELINE_REVIEWER,)
FREEZE_NAME = "demo-freeze"
FREEZE_MODEL = "demand-forecast"
FREEZE_MINUTES = 5
# fraud-detector's holdout (its validation rows, with the truth and a day/night slice), uploaded by
# the seed to a fixed place in MLflow's artifact store: both models are scored on it in every
# request's behavioural diff, and the non-required holdout-auc check gates on it.
HOLDOUT_PATH = "demo-datasets/fraud-detector/holdout.parquet"
HOLDOUT_URI = f"mlflow-artifacts:/{HOLDOUT_PATH}"
DEMO_POLICY = """\
# Written by `checkpoint demo` at every start (edits are overwritten). See README, "Checks".
rules:
  - name: fraud-detector to production
    models: ["fraud-detector"]
    targets: ["alias:champion", "stage:Production"]
    required_approvals: 1
    rollback: {{required_approvals: 1, allow_self_approval: true}}
    evaluation:
      - {{name: holdout, uri: "{holdout}", target: is_fraud, slices: [period]}}
    checks:
      - {{name: auc-gate, kind: metric, expression: "val_auc >= champion - 0.005"}}
      - {{name: signature, kind: signature}}
      - {{name: validated, kind: tags, tags: {{validation_status: passed}}, required: false}}
      - {{name: holdout-auc, kind: behaviour, expression: "roc_auc >= champion - 0.005", on: holdout, required: false}}
  - name: churn-model champion, from the pipeline
    models: ["{pipeline_model}"]
    targets: ["alias:{pipeline_alias}"]
    required_approvals: 1
    required_statuses: ["{pipeline_status}"]
# Who gets the demo's email (printed on the demo's console): name a reviewer on the form, or @mention.
people:
  alice: alice@example.com
  bob: bob@example.com
  carol: carol@example.com
  sam.okafor: sam.okafor@example.com
  maria.chen: maria.chen@example.com
  raj.iyer: raj.iyer@example.com
  lee.park: lee.park@example.com
  ana.silva: ana.silva@example.com
groups:
  ml-leads: [bob, maria.chen]
freezes:
  - name: {freeze}
    models: ["{model}"]
    targets: ["alias:champion"]
    from: "{start}"
    until: "{until}"
    timezone: UTC
    reason: "Demo freeze: {model} @champion holds still until {until_short} UTC"
"""


def freeze_window(now: datetime, minutes: int = FREEZE_MINUTES) -> tuple[datetime, datetime]:
    """The demo's one-off freeze: from the minute before ``now`` until ``minutes`` after it."""
    minute = now.astimezone(UTC).replace(second=0, microsecond=0)
    return minute - timedelta(minutes=1), minute + timedelta(minutes=minutes)


def write_policy(directory: Path, now: datetime) -> Path:
    """The demo's policy file (``CHECKPOINT_POLICY_FILE`` of the Checkpoint it starts), its
    freeze window starting at ``now``."""
    start, until = freeze_window(now)
    path = directory / "policy.yaml"
    path.write_text(
        DEMO_POLICY.format(
            freeze=FREEZE_NAME,
            model=FREEZE_MODEL,
            start=start.strftime("%Y-%m-%dT%H:%M"),
            until=until.strftime("%Y-%m-%dT%H:%M"),
            until_short=until.strftime("%H:%M"),
            pipeline_model=PIPELINE_MODEL,
            pipeline_alias=PIPELINE_ALIAS,
            pipeline_status=PIPELINE_STATUS,
            holdout=HOLDOUT_URI,
        )
    )
    return path


def holdout_frame() -> Any:
    """fraud-detector's holdout: its validation rows, the truth (``is_fraud``) and ``period``."""
    _, _, rows, truth = synthetic_data("fraud-detector")
    frame = rows.copy()
    frame["period"] = ["night" if h < 5 or h > 22 else "day" for h in frame["hour"]]
    frame["is_fraud"] = list(truth)
    return frame.reset_index(drop=True)


class DemoError(RuntimeError):
    """The demo cannot start; the message says what to do about it."""


def synthetic_data(model: str) -> tuple[Any, Any, Any, Any]:
    """A deterministic (train, validation) split of plausible tabular data for ``model``."""
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(sum(map(ord, model)))  # stable across runs, unlike hash()
    n = 5000
    if model == "fraud-detector":
        x = pd.DataFrame(
            {
                "amount": rng.lognormal(3.6, 1.1, n).round(2),
                "merchant_risk": rng.beta(2, 5, n).round(3),
                "hour": rng.integers(0, 24, n).astype(float),
                "distance_km": rng.exponential(25, n).round(1),
                "card_age_days": rng.integers(1, 3650, n).astype(float),
                "n_tx_24h": rng.poisson(3, n).astype(float),
            }
        )
        night = ((x.hour < 5) | (x.hour > 22)).astype(float)
        score = (
            0.5 * np.log1p(x.amount)
            + 5.0 * x.merchant_risk
            + 2.2 * night
            + 3.2 * np.tanh(x.distance_km / 40)
            + 1.8 * (x.card_age_days < 120)
            + 0.3 * x.n_tx_24h
            + 2.0 * (x.merchant_risk > 0.45) * night
        )
        y = (rng.random(n) < 1 / (1 + np.exp(-(2.0 * score - 15.5)))).astype(int)
    elif model == "churn-model":
        x = pd.DataFrame(
            {
                "tenure_months": rng.integers(1, 72, n).astype(float),
                "monthly_charges": rng.normal(65, 25, n).clip(15, 150).round(2),
                "support_tickets": rng.poisson(1.2, n).astype(float),
                "contract_months": rng.choice([1.0, 12.0, 24.0], n, p=[0.5, 0.3, 0.2]),
                "last_login_days": rng.exponential(10, n).round(0),
            }
        )
        score = (
            -0.05 * x.tenure_months
            + 0.02 * x.monthly_charges
            + 0.6 * x.support_tickets
            - 1.5 * (x.contract_months > 1)
            + 1.2 * np.tanh(x.last_login_days / 15)
            + 0.8 * (x.support_tickets > 2) * (x.contract_months == 1)
        )
        y = (rng.random(n) < 1 / (1 + np.exp(-(1.6 * score - 1.0)))).astype(int)
    else:
        x = pd.DataFrame(
            {
                "day_of_week": rng.integers(0, 7, n).astype(float),
                "week_of_year": rng.integers(1, 53, n).astype(float),
                "price": rng.uniform(1.5, 9.5, n).round(2),
                "promo": (rng.random(n) < 0.2).astype(float),
                "store_size": rng.choice([800.0, 1500.0, 3000.0], n),
                "temp_c": rng.normal(14, 8, n).round(1),
            }
        )
        weekend = (x.day_of_week >= 5).astype(float)
        y = (
            (
                40
                + 0.02 * x.store_size
                - 4.0 * x.price
                + 25 * x.promo
                + 15 * weekend
                + 20 * x.promo * weekend
                + 10 * np.sin(2 * np.pi * x.week_of_year / 52)
                + 0.6 * x.temp_c
                + rng.normal(0, 6, n)
            )
            .clip(0)
            .round(0)
        )
    cut = 4000
    return x.iloc[:cut], y[:cut], x.iloc[cut:], y[cut:]
