"""Email over SMTP: STARTTLS or implicit TLS, optional AUTH, multipart text + HTML.

The Message-ID is derived from the delivery's idempotency key, so a resend after a
crash carries the same Message-ID and mail systems can drop it. A follow-up names its
story's first alert in In-Reply-To and References and takes its subject as
``Re: <subject>``, so mail clients thread them. One SMTP connection per message: alerts
are rare, and a pooled connection would go stale.
"""

from __future__ import annotations

import smtplib
import ssl
from email.message import EmailMessage
from email.utils import format_datetime
from typing import Any

from alerts.model import message_id
from alerts.notifiers.base import NotifierContext, Outbound
from storywatch.errors import DeliveryError
from storywatch.settings.alerts import EmailChannel


def _one_line(text: str) -> str:
    """Header text on one line: a newline in a headline must not start a new header."""
    return " ".join(text.split())


class EmailNotifier:
    def __init__(self, name: str, cfg: EmailChannel, ctx: NotifierContext):
        self.name = name
        self.cfg = cfg
        self.ctx = ctx
        self.domain = cfg.from_addr.rpartition("@")[2].strip("> ") or "storywatch.invalid"

    def _tls_context(self) -> ssl.SSLContext:
        cafile = str(self.ctx.resolve(self.cfg.ca_file)) if self.cfg.ca_file else None
        return ssl.create_default_context(cafile=cafile)

    def build(self, msg: Outbound) -> EmailMessage:
        """The email for ``msg`` (public so that the README and tests can show it)."""
        r = self.ctx.renderer
        context = msg.context() | {"prefix": self.cfg.subject_prefix}
        em = EmailMessage()
        root_subject = (msg.parent_result or {}).get("subject")
        if msg.parent_key and root_subject:
            # Gmail threads only messages with the same subject, whatever References say.
            em["Subject"] = "Re: " + _one_line(str(root_subject)).removeprefix("Re: ")
        else:
            em["Subject"] = _one_line(r.render("email_subject.txt.j2", **context))
        em["From"] = self.cfg.from_addr
        em["To"] = ", ".join(self.cfg.to)
        em["Date"] = format_datetime(self.ctx.clock.now())
        alert_key, _, channel = msg.key.rpartition("|")
        em["Message-ID"] = message_id(alert_key, channel, self.domain)
        if msg.parent_key:
            parent_alert, _, parent_channel = msg.parent_key.rpartition("|")
            parent = message_id(parent_alert, parent_channel, self.domain)
            em["In-Reply-To"] = parent
            em["References"] = parent
        em["X-Storywatch-Key"] = _one_line(msg.key)
        em["Auto-Submitted"] = "auto-generated"
        em.set_content(r.render("email.txt.j2", **context) + "\n")
        em.add_alternative(r.render("email.html.j2", **context) + "\n", subtype="html")
        return em

    def send(self, msg: Outbound) -> dict[str, Any]:
        em = self.build(msg)
        cfg = self.cfg
        password = cfg.password.get_secret_value() if cfg.password else None
        try:
            smtp: smtplib.SMTP
            if cfg.security == "tls":
                smtp = smtplib.SMTP_SSL(cfg.host, cfg.port, timeout=cfg.timeout_s, context=self._tls_context())
            else:
                smtp = smtplib.SMTP(cfg.host, cfg.port, timeout=cfg.timeout_s)
            with smtp:
                if cfg.security == "starttls":
                    smtp.starttls(context=self._tls_context())
                if cfg.username and password is not None:
                    smtp.login(cfg.username, password)
                refused = smtp.send_message(em)
        except smtplib.SMTPAuthenticationError as exc:
            raise DeliveryError(self.name, f"SMTP authentication failed ({exc.smtp_code})", permanent=True) from None
        except smtplib.SMTPRecipientsRefused:
            raise DeliveryError(self.name, "every recipient was refused", permanent=True) from None
        except smtplib.SMTPResponseException as exc:
            detail = exc.smtp_error.decode(errors="replace") if isinstance(exc.smtp_error, bytes) else exc.smtp_error
            raise DeliveryError(
                self.name, f"SMTP error {exc.smtp_code}: {detail}", permanent=500 <= exc.smtp_code < 600
            ) from None
        except smtplib.SMTPNotSupportedError as exc:
            raise DeliveryError(self.name, f"SMTP server lacks a feature: {exc}", permanent=True) from None
        except ssl.SSLCertVerificationError as exc:
            raise DeliveryError(self.name, f"TLS certificate rejected: {exc.verify_message}") from None
        except (smtplib.SMTPException, OSError) as exc:
            raise DeliveryError(self.name, f"{type(exc).__name__}: {exc}") from None
        result: dict[str, Any] = {"message_id": em["Message-ID"], "subject": em["Subject"]}
        if refused:
            result["refused"] = sorted(refused)
        return result

    def close(self) -> None:
        pass
