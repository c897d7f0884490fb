"""Delivery of a run's branch: local push or bundle, or GitHub push + pull request + CI loop.

Only the models are re-exported here so that the workflow sandbox can import this
package without pulling in httpx or subprocess code.
"""

from agentgate.delivery.models import (
    CIFailureSummary,
    CISpec,
    CIStatus,
    DeliveryMode,
    DeliverySpec,
    GitHubMode,
    PullRequestInfo,
    PushResult,
)

__all__ = [
    "CIFailureSummary",
    "CISpec",
    "CIStatus",
    "DeliveryMode",
    "DeliverySpec",
    "GitHubMode",
    "PullRequestInfo",
    "PushResult",
]
