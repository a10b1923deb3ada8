"""Header signals shared by the prefilter and the detectors: a mail system's sender, a
bounce's subject, the address in a header value.  Their own module so that the prefilter
(every message of a sweep) loads without the detectors (only possible reports need them).
"""

from __future__ import annotations

import re

DAEMON_FROM = re.compile(
    r"mailer[-_ ]?daemon|postmaster|post_master|mail ?delivery|mail administrator|"
    r"mailadmin|mail ?system|mail ?deliver|mdaemon|mail ?router|smtp ?gateway|"
    r"system administrator|mail ?server|bounce|\bndr@|nobody@|\bdaemon@|"
    r"\bmailer@|\bmail@|_smtp_|smtp_?mail|delivery[-_ ]?(?:status|notification)|"
    r"microsoft outlook|automated response|antivirus|anti-virus|postoffice|"
    r"no-?reply@.*\.(?:dion|ezweb|au|docomo|softbank)|\bsmtp@|\bmmdf|inetgw|"
    r"notification@|content-filter|\bmta@|mailwasher|courier mail server",
)

BOUNCE_SUBJECT = re.compile(
    r"undeliver|undelivered|returned mail|returned to sender|returning message|"
    r"delivery status|delivery (?:failure|failed|notification|problem|report|error)|"
    r"failure notice|failure delivery|failed delivery|mail delivery|non[- ]?delivery|"
    r"not (?:be )?delivered|delivery has failed|could not (?:be )?(?:send|sent|deliver)|"
    r"warning: (?:could not|message|delayed)|warning--|delayed mail|message delayed|"
    r"delivery delayed|nondeliverable|non-deliverable|mail system error|mail error|"
    r"error sending|error during delivery|failed mail|mail failure|"
    r"message (?:you sent )?blocked|blocked message|rejected|unzustellbar|"
    r"unable to deliver|cannot be delivered|can't be delivered|delivery notification|"
    r"returned|bounce|ndn|non remis|nicht zustellbar|niet bezorgd|onbestelbaar|"
    r"non recapitabile|no (?:se )?(?:ha podido|pudo) entregar|не доставлено|недоставлен|"
    r"postmaster notify|see transcript|error mail report|considered unsolicited|"
    r"virus|failed|failure|delay|undeliverable|notification|"
    # webmail and gateways in other languages
    r"系统退信|退信通知|被退回|未送达|无法送达|无法投递|投递失败|發送失敗|退件通知|반송된|반송 메일|"
    r"메일 반송|반송 알림|"
    r"전송 실패|전송실패|"
    r"não (?:foi )?entregue|nao entregue|falha na entrega|mensagem devolvida|"
    r"no entregado|devuelto al remitente|niedostarcz|nie dostarczono|nedoručiteln|"
    r"nedoručen|niet afgeleverd|olevererbar|kunde inte levereras|"
    r"kunne ikke leveres|ikke-leverbar|ikke leveret|ei voitu toimittaa|"
    r"kézbesíthetetlen|teslim edilemedi|iletilemedi|μη παραδοτέο|"
    r"mancata consegna|non distribué|échec de (?:la )?remise|nu a putut fi livrat",
)

_ANGLE = re.compile(r"<([^<>]*)>")


def addr_of(value: str) -> str:
    m = _ANGLE.search(value) if "<" in value else None
    if m:
        return m.group(1).strip()
    return value.strip().split(" ")[0] if value.strip() else ""
