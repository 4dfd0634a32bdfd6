"""Personal data in a notice's text: each kind found and taken out, nothing else touched."""

from __future__ import annotations

from evidence_agent.domain.personal_data import personal_data_left, redact

TEXT = (
    "当事人张三，身份证号码110101199003071234，联系电话13812345678，"
    "住址：北京市东城区东直门南大街3号院2号楼501室，开户银行账号6222021234567890123，"
    "证人李四丰（电话010-87654321）在场。罚款人民币2000元，案号京东城罚〔2026〕12号。"
)


def test_every_kind_of_personal_data_is_taken_out() -> None:
    result = redact(TEXT, ["张三", "李四丰"])
    for secret in (
        "110101199003071234",
        "13812345678",
        "东直门南大街3号院",
        "6222021234567890123",
        "010-87654321",
        "张三",
        "李四丰",
    ):
        assert secret not in result.text, secret
    assert result.counts == {
        "address": 1,
        "bank_account": 1,
        "id_number": 1,
        "person": 2,
        "phone": 2,
    }
    assert "张某" in result.text and "李某" in result.text
    assert personal_data_left(result.text, ["张三", "李四丰"]) == []


def test_the_decision_itself_is_kept() -> None:
    result = redact(TEXT, ["张三"])
    assert "罚款人民币2000元" in result.text
    assert "京东城罚〔2026〕12号" in result.text


def test_an_unlabelled_street_address_and_spaced_numbers() -> None:
    result = redact("经营场所位于解放路128号3单元，账号 6222 0212 3456 7890，手机 138 1234 5678。")
    assert "解放路128号" not in result.text
    assert "6222 0212 3456 7890" not in result.text
    assert "138 1234 5678" not in result.text
