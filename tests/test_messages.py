"""The plug frame codec and the AES layer, with vectors from the protocol notes."""

from __future__ import annotations

import json

import pytest

from vesyncd.plugs import codec as m

LOGIN = (b'{"account":"1234567","id":"443c878f-f675-4c90-98e8-2f4566914d39","deviceName":"vesync_wifi_outlet",'
         b'"deviceVersion":"1.5","deviceVersionCode":5,"type":"wifi-switch","apptype":"switch-measure",'
         b'"firmName":"cosytek_firm_a","firmVersion":"1.89","firmVersionCode":89,"key":0,"relay":"open"}')


def test_aes_vectors() -> None:
    """Encryption matches the documented ciphertexts, including the full padding block when aligned."""
    assert m.aesEncrypt(b'{"uri":"/ka","rssi":-40}').hex() == (
        "33aefdd358d954a936998e0e0ea0199492ecff90d000c09ffb53d7b6df8c8996")
    assert m.aesEncrypt(b"0123456789abcdef").hex() == (
        "be84184f95150a286f48a33e36045c03307fb516fe371e96456b1199cc7add76")


def test_aes_round_trip() -> None:
    """Decryption undoes encryption and cuts at the first NUL."""
    for text in (b"x", b"0123456789abcdef", b'{"uri":"/report","e":"e10","t":"b4"}' * 5):
        assert m.aesDecrypt(m.aesEncrypt(text)) == text


@pytest.mark.parametrize("data", [b"", b"short", b"0123456789abcdef0"])
def test_aes_rejects_partial_blocks(data: bytes) -> None:
    """A binary frame that is not whole AES blocks is a ProtocolError."""
    with pytest.raises(m.ProtocolError):
        m.aesDecrypt(data)


def test_fixed_point_vectors() -> None:
    """The vendor fixed-point form decodes and encodes as the protocol notes say."""
    assert m.decodeFixed("1eb031") == pytest.approx(491.049)
    assert m.decodeFixed("200254") == pytest.approx(512.596)
    assert m.decodeFixed("781c2") == pytest.approx(120.45)
    assert m.decodeFixed("77283") == pytest.approx(119.643)
    assert m.encodeFixed(491.049) == "1eb031"
    assert m.encodeFixed(120.45) == "781c2"
    assert m.encodeFixed(1.0) == "1000"
    assert m.encodeFixed(0) == "0"
    assert m.encodeFixed(0.9996) == "1000"
    assert m.decodePair("NaN", "current") is None
    assert m.decodePair("0:0", "power") == (0.0, 0.0)


def test_login_decodes_capture() -> None:
    """The captured login becomes a Login with every field typed."""
    login = m.decodeFrame(LOGIN, expectLogin=True)
    assert isinstance(login, m.Login)
    assert login.id == "443c878f-f675-4c90-98e8-2f4566914d39"
    assert login.firmVersion == "1.89" and login.firmVersionCode == 89
    assert login.relay is True
    assert login.extra == {}


def test_report_decodes_hex() -> None:
    """e and t are lower-case hex: e10/b4 is 3600 watt-seconds over 180 s."""
    report = m.decodeFrame(b'{"uri":"/report","e":"e10","t":"b4"}', expectLogin=False)
    assert report == m.Report(wattSeconds=3600, seconds=180)


def test_runtime_info_decodes_vendor_pairs() -> None:
    """power and voltage use the vendor formula; current NaN is no reading; break is off."""
    info = m.decodeFrame(b'{"uri":"/runtimeInfo","relay":"break","meastate":"idle","power":"1eb031:200254",'
                         b'"voltage":"781c2:77283","current":"NaN"}', expectLogin=False)
    assert isinstance(info, m.RuntimeInfo)
    assert info.relay is False
    assert info.power == (pytest.approx(491.049), pytest.approx(512.596))
    assert info.voltage[0] == pytest.approx(120.45)
    assert info.current is None


def test_other_messages() -> None:
    """Every plug URI of the catalogue decodes to its type; extra fields are kept, not fatal."""
    d = lambda raw: m.decodeFrame(raw, expectLogin=False)  # noqa: E731
    assert d(b'{"uri":"/ka","rssi":-39}') == m.KeepAlive(rssi=-39)
    assert isinstance(d(b'{"uri":"/kr"}'), m.KeepAliveReply)
    assert d(b'{"uri":"/state","relay":"open"}').relay is True
    ev = d(b'{"uri":"/evtimer","aname":"b","relay":"break","id":3}')
    assert (ev.relay, ev.timerId, ev.aname) == (False, 3, "b")
    assert d(b'{"uri":"/trigger","type":1}').triggerType == 1
    tc = d(b'{"uri":"/getTriggerCnt","aboveTriggerCount":2,"belowTriggerCount":0}')
    assert (tc.above, tc.below) == (2, 0)
    assert d(b'{"uri":"/setCtlFlags","flag":0,"set":1}').set == 1
    assert d(b'{"uri":"/timer","error":0}').error == 0
    unknown = d(b'{"uri":"/assignGuid","guid":"x"}')
    assert isinstance(unknown, m.Unknown) and unknown.uri == "/assignGuid" and unknown.extra == {"guid": "x"}
    assert d(b'{"uri":"/ka","rssi":-39,"new":1}').extra == {"new": 1}


@pytest.mark.parametrize("raw, login", [
    (b"not json", False),
    (b"[1,2,3]", False),
    (b'"a string"', False),
    (b"\xff\xfe", False),
    (b'{"uri":"/ka","rssi":NaN}', False),
    (b'{"uri":"/ka","rssi":Infinity}', False),
    (b'{"uri":"/ka","rssi":"-40"}', False),
    (b'{"uri":"/ka","rssi":true}', False),
    (b'{"uri":"/ka","rssi":1.5}', False),
    (b'{"uri":"/report","e":"zz","t":"b4"}', False),
    (b'{"uri":"/report","e":324,"t":"b4"}', False),
    (b'{"uri":"/report","e":"-5","t":"b4"}', False),
    (b'{"uri":"/runtimeInfo","relay":"maybe"}', False),
    (b'{"uri":"/runtimeInfo","relay":"open","power":"1:2:3"}', False),
    (b'{"uri":5}', False),
    (b'{"nouri":1}', False),
    (b'{"uri":"/ka","x":"\\ud800"}', False),
    (b'{"id":""}', True),
    (b'{"id":5}', True),
    (b'{"uri":"/ka"}', True),
    (b'{"id":"abc","relay":"sideways"}', True),
    (b'{"id":"a\\u0000b"}', True),
    (b"[" * 5000 + b"]" * 5000, False),
    (b'{"a":' * 20 + b"1" + b"}" * 20, False),
    (b'{"uri":"/ka","pad":"' + b"x" * (64 * 1024) + b'"}', False),
])
def test_hostile_frames_raise_protocol_error(raw: bytes, login: bool) -> None:
    """Every malformed or hostile frame raises ProtocolError and nothing else."""
    with pytest.raises(m.ProtocolError):
        m.decodeFrame(raw, expectLogin=login)


def test_time_fields_fixed_clock() -> None:
    """The real cloud's reply: Wednesday 2017-11-01 17:15:25.134 UTC gives wd 3 and ms since midnight."""
    # 2017-11-01T17:15:25.134Z
    now = 1509556525.134
    fields = m.timeFields(now)
    assert fields == {"wd": 3, "year": 2017, "month": 11, "day": 1, "ms": 62125134}
    friday = m.timeFields(1509671188.167)  # 2017-11-03T01:06:28.167Z
    assert friday["wd"] == 5 and friday["day"] == 3
    assert m.timeFields(1510444800)["wd"] == 7  # Sunday 2017-11-12


def test_server_messages() -> None:
    """What the server sends is compact JSON with the fields of the captures."""
    reply = json.loads(m.loginReply(1509556525.134))
    assert reply == {"uri": "/loginReply", "error": 0, "wd": 3, "year": 2017, "month": 11, "day": 1,
                     "ms": 62125134, "hh": 0, "hl": 0, "lh": 0, "ll": 0}
    assert list(reply)[:2] == ["uri", "error"]
    kr = json.loads(m.keepAliveReply(1509556525.134))
    assert kr == {"uri": "/kr", "error": 0, "wd": 3, "year": 2017, "month": 11, "day": 1, "ms": 62125134}
    assert m.keepAliveReply(1509556525.134) == \
        b'{"uri":"/kr","error":0,"wd":3,"year":2017,"month":11,"day":1,"ms":62125134}'
    assert m.relayCommand(True) == b'{"uri":"/relay","action":"open"}'
    assert m.relayCommand(False) == b'{"uri":"/relay","action":"break"}'
    assert m.getRuntime() == b'{"uri":"/getRuntime"}'
    assert m.keepAliveProbe() == b'{"uri":"/ka"}'


def test_keepalive_reply_bytes_are_the_encoded_dictionary() -> None:
    """The /kr bytes, formatted directly, are exactly the JSON encoding of the reply's dictionary at
    any time (midnights, whole and fractional seconds, years far apart)."""
    import random

    rng = random.Random(19)
    times = [0.0, 86399.9995, 86400.0, 1509556525.134, 4102444799.999999, 1700000000.0005]
    times += [rng.uniform(0, 2**32) for _ in range(3000)] + [float(rng.randrange(0, 2**32)) for _ in range(500)]
    for now in times:
        expected = json.dumps({"uri": "/kr", "error": 0, **m.timeFields(now)}, separators=(",", ":")).encode()
        assert m.keepAliveReply(now) == expected, now
