from ndr_sweeper.sentids import ids_from_header


def test_all_provider_ids_are_collected_in_order():
    header = (
        b"Message-ID: <AM0PR01MB1234.outlook@eurprd01.prod.example.com>\r\n"
        b"X-Microsoft-Original-Message-ID: <client-1@laptop.example.org>\r\n"
        b"X-Google-Original-Message-ID: <g-2@mail.example.org>\r\n"
    )
    assert ids_from_header(header) == [
        "AM0PR01MB1234.outlook@eurprd01.prod.example.com",
        "client-1@laptop.example.org",
        "g-2@mail.example.org",
    ]


def test_folded_and_case_insensitive_field_names():
    header = b"message-id:\n  <folded@example.com>\nSubject: x\n"
    assert ids_from_header(header) == ["folded@example.com"]


def test_duplicates_and_junk_are_dropped():
    header = b"Message-ID: <a@b>\nX-Google-Original-Message-ID: <a@b>\nMessage-ID: \n"
    assert ids_from_header(header) == ["a@b"]


def test_a_comment_or_a_fold_inside_the_brackets():
    header = b"Message-ID: <lunch.42@example.org (sent from my phone)>\r\n"
    assert ids_from_header(header) == ["lunch.42@example.org"]
    assert ids_from_header(b"Message-ID: <a\r\n @b>\r\n") == ["a@b"]


def test_ids_in_message_finds_every_quoted_id_once():
    from ndr_sweeper.sentids import ids_in_message

    raw = (
        b"Message-ID: <bounce@mx.example>\r\n\r\nYour message <orig@laptop.example> to\r\n"
        b"<user@example.net> failed.\r\nReferences: <orig@laptop.example> <older@laptop.example>\r\n"
        b"not an id: <no-at-sign> <a b@c>\r\n"
    )
    assert ids_in_message(raw) == [
        "bounce@mx.example",
        "orig@laptop.example",
        "user@example.net",
        "older@laptop.example",
    ]
    assert len(ids_in_message(b"".join(b"<%d@x>" % i for i in range(1000)), limit=10)) == 10
