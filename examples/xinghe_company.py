"""The fictional company behind luodi's sample data, and the planted personal data.

星河精密制造有限公司 (Xinghe Precision Manufacturing Co., Ltd.) is invented for this project;
every name, number and address here is fictional. Domains use the reserved `.example` TLD.
The personal data (PII) is planted on purpose so that cleaning can be checked against
`examples/ground_truth.json`; the check digits are computed here so the resident ID numbers pass
ISO 7064 MOD 11-2 and the bank card passes Luhn, as real ones would.
"""

from __future__ import annotations

COMPANY_ZH = "星河精密制造有限公司"
COMPANY_EN = "Xinghe Precision Manufacturing Co., Ltd."
SHORT_ZH = "星河精密"
ADDRESS = "江苏省苏州市吴中区星河产业园 8 号"
WEBSITE = "www.xinghe-precision.example"

# Public contacts: the cleaning recipe's pii_mask allowlist keeps these.
HOTLINE = "400-861-9527"
SERVICE_MAIL = "service@xinghe-precision.example"

BOILERPLATE = "本文件为星河精密内部资料，未经许可不得外传"
PDF_HEADER = "星河精密 XH-CNC-500 使用手册 | User Manual"


def id_check_digit(first17: str) -> str:
    """The 18th character of a PRC resident ID number (ISO 7064 MOD 11-2) for `first17` digits."""
    weights = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2]
    total = sum(int(d) * w for d, w in zip(first17, weights, strict=True))
    return "10X98765432"[total % 11]


def luhn_check_digit(body: str) -> str:
    """The Luhn check digit to append to the digit string `body`."""
    total = 0
    for i, ch in enumerate(reversed(body)):
        d = int(ch)
        if i % 2 == 0:  # these positions are doubled once the check digit is appended
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return str((10 - total % 10) % 10)


# Planted PII (all fictional). Region codes are real-format county codes; the people are not.
HR_NAME = "张丽"
HR_MAIL = "zhangli.hr@xinghe-precision.example"
HR_MOBILE = "13912345678"
EMPLOYEE_NAME = "王小明"
EMPLOYEE_ID = "32050619900307123" + id_check_digit("32050619900307123")
SALARY_CARD = "622202123456789012" + luhn_check_digit("622202123456789012")
ENGINEER_MOBILE = "15000001111"  # in the PDF manual (service engineer 陈工)
FAQ_MOBILE = "18600002222"  # in the FAQ workbook (regional manager 刘先生)
FAQ_MAIL = "liu.jun@xinghe-precision.example"
CSV_MOBILE = "13700003333"  # in the GBK FAQ csv (engineer Mr. Zhao)
CSV_MAIL = "zhao.wei@xinghe-precision.example"
FEEDBACK_MOBILE = "15900004444"  # typed by a user into the chat (feedback_stars.jsonl)
TICKET_MOBILE = "13600005555"  # in a support ticket
NOTICE_MOBILE = "17700006666"  # IT duty phone in the UTF-16 notice
SHUTTLE_MOBILE = "18800007777"  # shuttle-bus dispatcher in the Word 97 (.doc) notice


def _id_ending_in_x() -> str:
    """A second resident ID, chosen so its check character is 'X' (masking must keep the X)."""
    for seq in range(100, 1000):
        first17 = f"11010519850615{seq:03d}"
        if id_check_digit(first17) == "X":
            return first17 + "X"
    raise AssertionError("unreachable: one in eleven sequence numbers gives X")


FEEDBACK_ID = _id_ending_in_x()  # typed by a user into the chat (feedback_thumbs.jsonl)
