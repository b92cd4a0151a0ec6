"""Settings of the alerts stage: channels, rules and delivery."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field

from storywatch.settings.base import Secret, Section


class ChannelBase(Section):
    template: Path | None = None
    timeout_s: float = Field(30.0, gt=0)


class EmailChannel(ChannelBase):
    kind: Literal["email"]
    host: str
    port: int = Field(587, ge=1, le=65535)
    security: Literal["starttls", "tls", "none"] = "starttls"
    username: str | None = None
    password: Secret | None = None
    from_addr: str
    to: list[str] = Field(min_length=1)
    ca_file: Path | None = None


class SlackChannel(ChannelBase):
    kind: Literal["slack"]
    webhook_url: Secret | None = None
    token: Secret | None = None
    channel: str | None = None
    api_url: str = "https://slack.com/api/"


class WebhookChannel(ChannelBase):
    kind: Literal["webhook"]
    url: Secret
    signing_secret: Secret | None = None


class ConsoleChannel(ChannelBase):
    kind: Literal["console"]


class FileChannel(ChannelBase):
    kind: Literal["file"]
    path: Path


Channel = Annotated[
    EmailChannel | SlackChannel | WebhookChannel | ConsoleChannel | FileChannel, Field(discriminator="kind")
]


class AlertSettings(Section):
    channels: dict[str, Channel] = Field(default_factory=dict)
    default_channels: list[str] = Field(default_factory=list)
    operator_channels: list[str] = Field(default_factory=list)
    max_attempts: int = Field(8, ge=1)
    backoff_base_s: float = Field(5.0, gt=0)
    backoff_max_s: float = Field(900.0, gt=0)
