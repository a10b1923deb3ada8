"""Where the big mail providers keep IMAP, and how to find an unknown domain's server.

Pure: a table of presets, matched by the address's domain or (for a provider hosting a
custom domain) by the domain's MX hosts; and RFC 6186 SRV records (``_imaps._tcp``, then
``_imap._tcp``) through a resolver given by the caller (``dnsquery.DnsResolver`` in use, a
fake in tests). ``init`` turns the result into an ``[[accounts]]`` table.

Folder names are what the provider's IMAP server shows for an account in English; the sweep
finds them by their SPECIAL-USE flag (or name) anyway, so ``init`` writes them only as hints.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final, Protocol

from .dnsquery import DnsError, Mx, Srv, host_name

_ZOHO_HINT: Final = (
    "Zoho: enable IMAP access in Settings > Mail Accounts; with two-factor authentication "
    "on, use an application-specific password"
)
_ONE_AND_ONE_HINT: Final = (
    "allow POP3/IMAP access once in the web mail's settings; with two-factor "
    "authentication on, use an app password"
)


@dataclass(frozen=True, slots=True)
class Preset:
    """One provider's IMAP service."""

    key: str  # what `init --provider` takes
    name: str
    host: str
    port: int = 993
    security: str = "tls"
    auth: str = "password"  # "oauth2" where the provider accepts nothing else from us
    oauth2_provider: str | None = None
    username: str = "address"  # "address" (you@example.org) or "localpart" (you)
    sent: str | None = None
    junk: str | None = None
    trash: str | None = None
    domains: tuple[str, ...] = ()
    mx: tuple[str, ...] = ()  # MX host name suffixes of custom domains it hosts
    hint: str = ""  # the one thing to know, shown by init


# fmt: off
PRESETS: Final[tuple[Preset, ...]] = (
    Preset(
        key="gmail",
        name="Gmail / Google Workspace",
        host="imap.gmail.com",
        auth="oauth2",
        oauth2_provider="google",
        sent="[Gmail]/Sent Mail",
        junk="[Gmail]/Spam",
        trash="[Gmail]/Trash",
        domains=("gmail.com", "googlemail.com"),
        mx=("google.com", "googlemail.com"),
        hint=(
            "Gmail signs in with OAuth2 (register a desktop app in Google Cloud and give its "
            "client id), or with an app password (--auth password, needs 2-Step "
            "Verification); Gmail empties Spam after 30 days, which ends the undo window"
        ),
    ),
    Preset(
        key="microsoft",
        name="Outlook.com / Microsoft 365",
        host="outlook.office365.com",
        auth="oauth2",
        oauth2_provider="microsoft",
        sent="Sent Items",
        junk="Junk Email",
        trash="Deleted Items",
        domains=(
            "outlook.com", "hotmail.com", "live.com", "msn.com", "windowslive.com",
            "outlook.de", "outlook.fr", "outlook.it", "outlook.es", "outlook.jp",
            "outlook.com.au", "outlook.com.br", "hotmail.co.uk", "hotmail.de", "hotmail.fr",
            "hotmail.it", "hotmail.es", "hotmail.nl", "hotmail.ca", "live.co.uk", "live.de",
            "live.fr", "live.nl", "live.ca", "live.com.au",
        ),
        mx=("mail.protection.outlook.com", "olc.protection.outlook.com"),
        hint=(
            "Microsoft accepts only OAuth2 for IMAP: register an app in Microsoft Entra (or "
            "use your organisation's) and give its client id; IMAP must be enabled for the "
            "mailbox"
        ),
    ),
    Preset(
        key="yahoo",
        name="Yahoo Mail",
        host="imap.mail.yahoo.com",
        sent="Sent",
        junk="Bulk",
        trash="Trash",
        domains=(
            "yahoo.com", "ymail.com", "rocketmail.com", "myyahoo.com", "yahoo.co.uk",
            "yahoo.de", "yahoo.fr", "yahoo.it", "yahoo.es", "yahoo.ca", "yahoo.com.au",
            "yahoo.com.br", "yahoo.co.in", "yahoo.co.jp",
        ),
        mx=("yahoodns.net",),
        hint="Yahoo needs an app password (Account security > Generate app password)",
    ),
    Preset(
        key="aol",
        name="AOL Mail",
        host="imap.aol.com",
        sent="Sent",
        junk="Bulk",
        trash="Trash",
        domains=("aol.com", "aim.com", "aol.co.uk", "aol.de", "aol.fr", "aol.it", "aol.es"),
        hint="AOL needs an app password (Account security > Generate app password)",
    ),
    Preset(
        key="icloud",
        name="iCloud Mail",
        host="imap.mail.me.com",
        username="localpart",
        sent="Sent Messages",
        junk="Junk",
        trash="Deleted Messages",
        domains=("icloud.com", "me.com", "mac.com"),
        mx=("mail.icloud.com",),
        hint=(
            "iCloud needs an app-specific password (appleid.apple.com > Sign-In and "
            "Security); the user name is the part before the @ (try the whole address if "
            "that is refused)"
        ),
    ),
    Preset(
        key="fastmail",
        name="Fastmail",
        host="imap.fastmail.com",
        sent="Sent",
        junk="Spam",
        trash="Trash",
        domains=("fastmail.com", "fastmail.fm", "fastmail.org", "messagingengine.com"),
        mx=("messagingengine.com",),
        hint="Fastmail needs an app password (Settings > Privacy & Security > App passwords)",
    ),
    Preset(
        key="gmx",
        name="GMX (gmx.net, gmx.de)",
        host="imap.gmx.net",
        sent="Gesendet",
        junk="Spamverdacht",
        trash="Gelöscht",
        domains=("gmx.net", "gmx.de", "gmx.at", "gmx.ch", "gmx.eu", "gmx.org", "gmx.info"),
        hint="GMX: " + _ONE_AND_ONE_HINT,
    ),
    Preset(
        key="gmx.com",
        name="GMX (gmx.com)",
        host="imap.gmx.com",
        sent="Sent",
        junk="Spam",
        trash="Trash",
        domains=("gmx.com", "gmx.us", "gmx.co.uk", "gmx.fr", "gmx.es", "gmx.it", "gmx.ca"),
        hint="GMX: " + _ONE_AND_ONE_HINT,
    ),
    Preset(
        key="webde",
        name="WEB.DE",
        host="imap.web.de",
        username="localpart",
        sent="Gesendet",
        junk="Spam",
        trash="Papierkorb",
        domains=("web.de",),
        hint="WEB.DE: " + _ONE_AND_ONE_HINT,
    ),
    Preset(
        key="zoho",
        name="Zoho Mail",
        host="imap.zoho.com",
        sent="Sent",
        junk="Spam",
        trash="Trash",
        domains=("zoho.com", "zohomail.com"),
        hint=_ZOHO_HINT,
    ),
    # Organisation (custom-domain) accounts use the "pro" servers of their data centre.
    Preset(key="zoho-org", name="Zoho Mail (organisation)", host="imappro.zoho.com",
           sent="Sent", junk="Spam", trash="Trash", mx=("zoho.com",), hint=_ZOHO_HINT),
    Preset(key="zoho-eu", name="Zoho Mail (EU)", host="imappro.zoho.eu", sent="Sent",
           junk="Spam", trash="Trash", domains=("zoho.eu", "zohomail.eu"), mx=("zoho.eu",),
           hint=_ZOHO_HINT),
    Preset(key="zoho-in", name="Zoho Mail (India)", host="imappro.zoho.in", sent="Sent",
           junk="Spam", trash="Trash", domains=("zoho.in", "zohomail.in"), mx=("zoho.in",),
           hint=_ZOHO_HINT),
    Preset(key="zoho-au", name="Zoho Mail (Australia)", host="imappro.zoho.com.au",
           sent="Sent", junk="Spam", trash="Trash", mx=("zoho.com.au",), hint=_ZOHO_HINT),
    Preset(
        key="dovecot",
        name="self-hosted (Dovecot)",
        host="",  # the domain's own: --host, or found in DNS
        sent="Sent",
        junk="Junk",
        trash="Trash",
        hint="a Dovecot with the usual special-use folders (Sent, Junk, Trash)",
    ),
)
# fmt: on


def by_key(key: str) -> Preset | None:
    return next((p for p in PRESETS if p.key == key.lower()), None)


def by_domain(domain: str) -> Preset | None:
    d = domain.rstrip(".").lower()
    return next((p for p in PRESETS if d in p.domains), None)


def by_mx(hosts: Sequence[str]) -> Preset | None:
    """The preset of the provider that receives mail for a domain with these MX hosts (the
    most preferred first); None when none is a provider we know."""
    for raw in hosts:
        h = raw.rstrip(".").lower()
        for p in PRESETS:
            if any(h == s or h.endswith("." + s) for s in p.mx):
                return p
    return None


def username_for(preset: Preset | None, address: str) -> str:
    if preset is not None and preset.username == "localpart":
        return address.rsplit("@", 1)[0]
    return address


class Resolver(Protocol):
    """What :func:`discover` needs of DNS: SRV and MX records (``dnsquery.DnsResolver``)."""

    def srv(self, name: str) -> list[Srv]: ...

    def mx(self, name: str) -> list[Mx]: ...


@dataclass(frozen=True, slots=True)
class Found:
    """Where a domain's IMAP server is, and how that was learnt."""

    host: str
    port: int
    security: str
    source: str  # "provider", "mx", "srv"
    preset: Preset | None = None
    detail: str = ""


def srv_order(records: Sequence[Srv]) -> list[Srv]:
    """Usable records, best first: lowest priority, then highest weight (RFC 2782 picks by
    weight at random; one server is all a config file can hold, so the heaviest wins)."""
    usable = [r for r in records if r.target and 0 < r.port < 65536]
    return sorted(usable, key=lambda r: (r.priority, -r.weight, r.target, r.port))


def from_srv(domain: str, resolver: Resolver) -> Found | None:
    """RFC 6186: ``_imaps._tcp.DOMAIN`` (implicit TLS), then ``_imap._tcp.DOMAIN``
    (STARTTLS). A target of "." says the service is not offered there."""
    for service, security in (("_imaps", "tls"), ("_imap", "starttls")):
        records = resolver.srv(f"{service}._tcp.{domain}")
        for r in srv_order(records):
            host = host_name(r.target)
            if host is not None:
                return Found(host, r.port, security, "srv", detail=f"{service}._tcp.{domain}")
    return None


def from_mx(domain: str, resolver: Resolver) -> Found | None:
    records = sorted(resolver.mx(domain), key=lambda r: (r.preference, r.host))
    preset = by_mx([r.host for r in records])
    if preset is None:
        return None
    return Found(preset.host, preset.port, preset.security, "mx", preset, records[0].host)


def discover(address: str, resolver: Resolver | None = None) -> Found | None:
    """Where the IMAP server of ``address`` is: a known provider's domain, else the domain's
    SRV records, else its MX hosts (a provider hosting the domain). None when nothing says.

    Without ``resolver`` only the provider table is asked. DNS failures count as "nothing
    found" (``init`` then asks for the host).
    """
    domain = address.rsplit("@", 1)[-1].rstrip(".").lower()
    preset = by_domain(domain)
    if preset is not None:
        return Found(preset.host, preset.port, preset.security, "provider", preset, domain)
    if resolver is None:
        return None
    for step in (from_srv, from_mx):
        try:
            found = step(domain, resolver)
        except DnsError:
            continue
        if found is not None:
            return found
    return None
