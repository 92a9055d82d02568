"""Structured content of the sample data: FAQ rows, chat feedback and support tickets.

The planted problems (duplicates, an empty answer, HTML in an answer, PII, missing ratings, a
truncated JSON line) are placed here on purpose and listed in examples/ground_truth.json by
make_examples.py, which derives their positions from these lists.
"""

from __future__ import annotations

from xinghe_company import (
    CSV_MAIL,
    CSV_MOBILE,
    FAQ_MAIL,
    FAQ_MOBILE,
    FEEDBACK_ID,
    FEEDBACK_MOBILE,
    HOTLINE,
    SERVICE_MAIL,
    TICKET_MOBILE,
)

# (问题, 答案, 类别)
FAQ_BASE: list[tuple[str, str, str]] = [
    (
        "XH-CNC-500 的主轴最高转速是多少？",
        "XH-CNC-500 标配 BT40 主轴，最高转速 12000 rpm，可选配 15000 rpm 直联主轴。",
        "产品",
    ),
    (
        "XH-CNC-500 的刀库能装多少把刀？",
        "标配 24 把刀的机械手刀库（ATC），换刀时间约 2.5 秒（刀对刀）。",
        "产品",
    ),
    (
        "XH-CNC-500 的定位精度是多少？",
        "定位精度 ±0.005 mm，重复定位精度 ±0.003 mm，按 GB/T 18400.4 检测。",
        "产品",
    ),
    (
        "XH-CNC-500 对电源有什么要求？",
        "三相 AC 380 V ±10%，50 Hz，容量 25 kVA，接地电阻小于 4 Ω。",
        "技术",
    ),
    (
        "机床安装对地基有什么要求？",
        "地基混凝土厚度不小于 300 mm，养护 28 天后方可安装；车间温度 5—40 ℃。",
        "技术",
    ),
    (
        "开机后出现 AL-101 报警怎么办？",
        "AL-101 表示主轴过载。请降低切削深度或进给，检查刀具是否磨损，复位后重新加工。",
        "技术",
    ),
    (
        "出现 AL-310 换刀超时报警怎么处理？",
        "检查气源压力是否在 0.5—0.7 MPa，刀库原点开关是否松动，然后在 MDI 下执行 M06 复位。",
        "技术",
    ),
    (
        "AL-402 润滑油位低报警如何消除？",
        "向导轨润滑油箱加注 68# 导轨油至上限刻度，按 RESET 键即可消除。",
        "技术",
    ),
    ("导轨润滑油用什么型号？", "使用 ISO VG68 导轨油（68# 导轨油），每日开机前检查油位。", "技术"),
    ("切削液浓度多少合适？", "乳化型切削液浓度建议 5%—8%，每日用折光仪检测一次。", "技术"),
    ("主轴多久保养一次？", "每周清洁主轴锥孔和刀柄，每半年检查一次拉刀力（不低于 8 kN）。", "技术"),
    ("XH-NC8 系统支持哪些程序传输方式？", "支持 USB、以太网 FTP 和 DNC 在线加工三种方式。", "技术"),
    (
        "如何备份 XH-NC8 系统参数？",
        "在“系统 > 数据备份”页面插入 U 盘，选择“全部参数”后按“执行”，约 1 分钟完成。",
        "技术",
    ),
    (
        "XH-S200 传感器的量程有哪些？",
        "XH-S200-30 量程 ±5 mm，XH-S200-50 量程 ±10 mm，XH-S200-100 量程 ±35 mm。",
        "产品",
    ),
    (
        "XH-S200 支持哪些输出方式？",
        "4—20 mA 模拟量、RS-485（Modbus RTU）和 NPN/PNP 开关量输出。",
        "产品",
    ),
    (
        "XH-S200 的防护等级是多少？",
        "防护等级 IP67，可在切削液飞溅环境中使用，但不可长期浸泡。",
        "产品",
    ),
    (
        "测量镜面工件读数不稳定怎么办？",
        "将传感器倾斜 5°—10° 安装，并把平均次数设为 64 次以上。",
        "技术",
    ),
    (
        "XH-S200 的 Modbus 默认参数是什么？",
        "站号 1，波特率 115200，8 数据位，无校验，1 停止位。",
        "技术",
    ),
    (
        "XH-T10 温度传感器电池能用多久？",
        "一节 ER14505 锂电池在 10 分钟上报一次的设置下可连续工作约 3 年。",
        "产品",
    ),
    (
        "XH-Link 平台可以同时接入多少台设备？",
        "标准版支持 200 台设备接入，企业版不限台数，支持私有化部署。",
        "产品",
    ),
    (
        "整机保修期是多久？",
        "整机保修 12 个月，主轴和数控系统保修 24 个月，自验收合格之日起计算。",
        "售后",
    ),
    (
        "哪些情况不在保修范围内？",
        "人为损坏、未按手册操作、使用非原厂配件、自然灾害造成的故障不在保修范围内。",
        "售后",
    ),
    (
        "售后工程师多久能到现场？",
        "江浙沪地区 24 小时内到达，其他地区 48 小时内到达，偏远地区另行约定。",
        "售后",
    ),
    (
        "如何申请上门维修？",
        f"拨打客户服务热线 {HOTLINE} 或发送邮件至 {SERVICE_MAIL}，提供机床序列号和报警代码。",
        "售后",
    ),
    (
        "备件多久能发货？",
        "常用备件（刀柄、拉钉、过滤器等）现货 2 个工作日内发货，主轴等大件 2—4 周。",
        "售后",
    ),
    (
        "可以提供操作培训吗？",
        "设备验收时免费提供 3 天操作与编程培训，额外培训按 2000 元/天收费。",
        "售后",
    ),
    (
        "如何查询订单发货进度？",
        "登录客户门户“我的订单”查看物流状态，或联系对应的销售代表。",
        "订单",
    ),
    ("下单后多久交货？", "XH-CNC-500 标准配置交期 45 天，选配特殊附件的交期另行确认。", "订单"),
    (
        "支持哪些付款方式？",
        "支持银行转账和银行承兑汇票，标准付款条件为 30% 预付款、60% 发货前、10% 验收后。",
        "订单",
    ),
    (
        "发票多久开具？",
        "收到全款后 5 个工作日内开具增值税专用发票，电子发票发送至合同预留邮箱。",
        "订单",
    ),
    ("可以分期付款吗？", "可通过合作融资租赁公司办理分期，首付最低 20%，期限 12—36 个月。", "订单"),
    (
        "旧机床可以以旧换新吗？",
        "可以。我们对星河精密旧机床提供评估回收，折价可抵新机货款。",
        "订单",
    ),
    ("公司地址在哪里？", "江苏省苏州市吴中区星河产业园 8 号，工作日 8:30—17:30 接待来访。", "其他"),
    (
        "可以参观工厂吗？",
        "欢迎参观，请提前 3 个工作日预约，参观车间须穿戴安全鞋和防护眼镜。",
        "其他",
    ),
]

# Planted problem rows of the FAQ workbook (appended after FAQ_BASE, in this order).
FAQ_NEAR_DUP_QUESTION = "XH-CNC-500的主轴最高转速是多少?"  # row 2's question minus a space, ASCII ?
FAQ_EMPTY_ANSWER_QUESTION = "XH-TL-300 数控车床的最大加工直径是多少？"
FAQ_HTML_ANSWER = (
    "<p>请在 XH-NC8 系统中依次进入<b>设置 &gt; 网络</b>，将 IP 地址设为与电脑同一网段，"
    '然后在电脑上打开 FTP 客户端连接。<br/>详见<a href="/docs/xh-nc8-ftp">FTP 设置说明</a>。</p>'
)
FAQ_PII_ANSWER = (
    f"请联系华东区区域经理刘先生，手机 {FAQ_MOBILE}，邮箱 {FAQ_MAIL}；"
    f"或拨打客户服务热线 {HOTLINE}。"
)

FAQ_EXTRA: list[tuple[str, str, str]] = [
    FAQ_BASE[5],  # exact duplicate of the AL-101 row
    (FAQ_NEAR_DUP_QUESTION, FAQ_BASE[0][1], "产品"),
    (FAQ_EMPTY_ANSWER_QUESTION, "", "产品"),
    ("XH-NC8 系统怎样设置网络传输程序？", FAQ_HTML_ANSWER, "技术"),
    ("华东地区的大客户找谁对接？", FAQ_PII_ANSWER, "订单"),
    FAQ_BASE[20],  # exact duplicate of the warranty row
]

FAQ_ROWS: list[tuple[str, str, str]] = FAQ_BASE + FAQ_EXTRA

# The GBK csv: some workbook rows (cross-file exact duplicates) plus English rows.
CSV_FROM_WORKBOOK = [0, 3, 20, 23]  # indexes into FAQ_BASE
CSV_ENGLISH: list[tuple[str, str, str]] = [
    (
        "What is the maximum spindle speed of the XH-CNC-500?",
        "12000 rpm with the standard BT40 spindle; a 15000 rpm direct-drive spindle is optional.",
        "product",
    ),
    (
        "How long is the machine warranty?",
        "12 months for the whole machine and 24 months for the spindle and CNC control, "
        "from acceptance.",
        "after-sales",
    ),
    (
        "Which outputs does the XH-S200 sensor have?",
        "4-20 mA analog, RS-485 (Modbus RTU) and one NPN/PNP switching output.",
        "product",
    ),
    (
        "How do I clear alarm AL-402?",
        "Fill the way-lube tank with ISO VG68 oil up to the upper mark, then press RESET.",
        "technical",
    ),
    (
        "Do you offer operator training?",
        "Three days of operation and programming training are free at acceptance.",
        "after-sales",
    ),
    (
        "What payment terms do you accept?",
        "Bank transfer or bank acceptance bill: 30% down payment, 60% before shipment, "
        "10% after acceptance.",
        "orders",
    ),
    (
        "Who handles key accounts in East China?",
        f"Please contact our engineer Mr. Zhao at {CSV_MOBILE} or {CSV_MAIL}.",
        "orders",
    ),
    (
        "How do I request an on-site repair?",
        f"Call {HOTLINE} or write to {SERVICE_MAIL} with the machine serial number and alarm code.",
        "after-sales",
    ),
]
CSV_ROWS: list[tuple[str, str, str]] = (
    [FAQ_BASE[i] for i in CSV_FROM_WORKBOOK] + CSV_ENGLISH + [CSV_ENGLISH[1]]  # last: exact dup
)

# Chat feedback. Each prompt gets several responses with different ratings.
P_SPEED = "XH-CNC-500 主轴最高转速是多少？"
P_AL310 = "机床报 AL-310 换刀超时，怎么处理？"
P_WARRANTY = "主轴坏了还在保修期吗？设备是去年 3 月验收的。"
P_S200 = "XH-S200 测黑色橡胶一直显示 ----，是坏了吗？"
P_CALLBACK = f"我的手机号是 {FEEDBACK_MOBILE}，请让售后工程师给我回电。"
P_INVOICE = "发票什么时候能开？"
P_BACKUP = "怎么备份系统参数？"
P_ID = f"我要修改客户门户的实名信息，身份证号 {FEEDBACK_ID}，怎么操作？"

# (prompt, response, rating or None for missing, time, user); rating "absent" drops the key.
STARS: list[tuple[str, str, object, str, str]] = [
    (
        P_SPEED,
        "XH-CNC-500 标配 BT40 主轴，最高转速 12000 rpm，可选配 15000 rpm 直联主轴。",
        5,
        "2025-06-02T09:15:00+08:00",
        "u1001",
    ),
    (P_SPEED, "最高转速 8000 rpm。", 1, "2025-06-02T09:16:30+08:00", "u1002"),
    (P_SPEED, "主轴转速取决于具体配置，请咨询销售。", 3, "2025-06-03T10:02:00+08:00", "u1003"),
    (
        P_AL310,
        "检查气源压力是否在 0.5—0.7 MPa、刀库原点开关是否松动，然后在 MDI 下执行 M06 复位。",
        5,
        "2025-06-03T14:20:00+08:00",
        "u1004",
    ),
    (P_AL310, "重启机床即可。", 2, "2025-06-03T14:25:00+08:00", "u1005"),
    (
        P_AL310,
        "AL-310 表示换刀超时，可能是气压不足，请先检查气源。",
        4,
        "2025-06-04T08:40:00+08:00",
        "u1001",
    ),
    (
        P_WARRANTY,
        "主轴保修 24 个月，从验收合格之日起算，去年 3 月验收的仍在保修期内。",
        5,
        "2025-06-05T11:00:00+08:00",
        "u1006",
    ),
    (P_WARRANTY, "整机保修 12 个月，已经过保了。", 1, "2025-06-05T11:03:00+08:00", "u1007"),
    (
        P_S200,
        "不是故障。黑色橡胶反射率低，请将曝光模式设为 HIGH，并确认距离在量程内。",
        4,
        "2025-06-06T16:45:00+08:00",
        "u1008",
    ),
    (P_S200, "传感器坏了，请返厂维修。", 1, "2025-06-06T16:50:00+08:00", "u1009"),
    (P_S200, "请检查接线。", None, "2025-06-07T09:10:00+08:00", "u1010"),
    (
        P_CALLBACK,
        f"好的，已为您登记回电请求，工程师将在 2 小时内联系您。也可拨打 {HOTLINE}。",
        5,
        "2025-06-07T10:30:00+08:00",
        "u1011",
    ),
    (P_CALLBACK, "请自行拨打热线。", 2, "2025-06-07T10:31:00+08:00", "u1011"),
    (
        P_INVOICE,
        "收到全款后 5 个工作日内开具增值税专用发票。",
        4,
        "2025-06-08T13:00:00+08:00",
        "u1012",
    ),
    (P_INVOICE, "发货时开具。", "absent", "2025-06-08T13:05:00+08:00", "u1013"),
]
STARS_DUPLICATE_OF = 0  # the stars file repeats STARS[0] verbatim as its last line

THUMBS: list[tuple[str, str, object, str, str]] = [
    (
        P_BACKUP,
        "在“系统 > 数据备份”页面插入 U 盘，选择“全部参数”后按“执行”。",
        "👍",
        "2025-07-01T09:00:00+08:00",
        "u2001",
    ),
    (P_BACKUP, "系统参数无法备份。", "👎", "2025-07-01T09:02:00+08:00", "u2002"),
    (P_BACKUP, "请联系售后。", None, "2025-07-01T09:05:00+08:00", "u2003"),
    (
        P_ID,
        "请登录客户门户，在“账户设置 > 实名信息”中上传证件照片，审核约 1 个工作日。",
        "👍",
        "2025-07-02T15:10:00+08:00",
        "u2004",
    ),
    (P_ID, "无法修改。", "👎", "2025-07-02T15:12:00+08:00", "u2004"),
    (
        P_AL310,
        "检查气源压力和刀库原点开关，再执行 M06 复位。",
        "👍",
        "2025-07-03T08:30:00+08:00",
        "u2005",
    ),
    (P_AL310, "换一把刀试试。", "👎", "2025-07-03T08:31:00+08:00", "u2006"),
    (P_INVOICE, "收到全款后 5 个工作日内开具。", "👍", "2025-07-04T10:00:00+08:00", "u2007"),
    (P_SPEED, "12000 rpm。", "absent", "2025-07-05T11:20:00+08:00", "u2008"),
]
# After this many good lines the thumbs file gets a truncated JSON line.
THUMBS_MALFORMED_AFTER = 5
THUMBS_MALFORMED = '{"prompt": "XH-S200 的防护等级是多少？", "response": "IP6'

# Support tickets: (text, label). Imbalanced on purpose: 其他 is the rare class.
TICKETS_FAULT = [
    "XH-CNC-500 开机后报 AL-101 主轴过载，空转也报警",
    "X 轴移动时有异响，报 AL-205 跟随误差过大",
    "换刀过程中机械手卡住，报 AL-310 换刀超时",
    "主轴温度持续升高到 65 度，出现 AL-550 报警",
    "伺服驱动器报警 AL-901，驱动器显示 Err 16",
    "XH-S200 传感器指示灯不亮，已确认 24V 供电正常",
    "XH-S200 测量值跳动严重，波动超过 20 微米",
    "XH-S200 的 RS-485 通讯无响应，PLC 读不到数据",
    "XH-T10 温度传感器连续两天没有上报数据",
    "数控系统 XH-NC8 开机黑屏，风扇正常转动",
    "刀库旋转时偶尔丢刀位，需要手动回零",
    "冷却液泵不出水，电机有嗡嗡声",
    "导轨润滑泵不打油，AL-402 报警复位后又出现",
    "Z 轴下降时有抖动，加工表面有振纹",
    "机床急停按钮松开后仍然无法复位",
    "主轴拉刀力不足，刀柄松动",
    "XH-TL-300 车床卡盘夹不紧工件",
    "XH-TL-300 刀塔换位时报警，刀塔无法锁紧",
    "工作台定位精度下降，加工孔距偏差 0.03 mm",
    "排屑器链板卡死，电机过热保护",
    "XH-Link 平台显示设备离线，但机床在正常加工",
    "主轴冷却机报高压故障，压缩机停机",
    "对刀仪 XH-TS3 测量结果每次不一样",
    "气压正常但主轴松刀不动作",
    "机床照明灯和门锁同时失效",
    "XH-S200 显示 ---- ，被测物是白色陶瓷",
    "四轴转台回零位置每次偏一点",
    "开机回零时 Y 轴超程报警",
]
TICKETS_SERVICE = [
    "设备已过保，想购买一年延保服务",
    f"申请工程师上门做年度精度检测，联系人电话 {TICKET_MOBILE}",
    "需要采购 10 套 BT40 刀柄和拉钉",
    "新进操作工需要安排一次编程培训",
    "想了解旧机床以旧换新的折价政策",
    "机床搬迁到新厂房，需要重新安装调平",
    "申请 XH-NC8 系统软件升级到最新版本",
    "备件主轴冷却机滤芯什么时候能发货",
    "上次维修的服务报告还没有收到",
    "维修工程师的服务态度很好，表示感谢",
    "想预约下个月的设备保养",
    "询问 XH-S200 传感器的返修进度",
    "需要提供 XH-CNC-500 的地基图纸",
    "XH-Link 平台账号忘记密码，需要重置",
    "申请把 XH-T10 的上报周期改成 1 分钟",
    "询问保修期内更换的主轴是否重新计算保修",
    "请提供刀库换刀机械手的维修视频",
    "想增加两台 XH-CNC-500 的远程诊断服务",
]
TICKETS_BILLING = [
    "发票抬头写错了，申请重新开具",
    "预付款已经打过去了，请确认到账",
    "对账单金额和合同金额不一致",
    "申请把纸质发票换成电子发票",
    "分期付款的第三期账单日期有误",
    "上月维修费用发票还没收到",
    "延保服务费可以开专票吗",
    "合同尾款 10% 什么时候付",
    "备件订单重复扣款，申请退款",
    "需要提供全年采购对账明细",
]
TICKETS_OTHER = [
    "想来工厂参观，怎么预约",
    "贵公司是否招聘售后工程师",
    "展会上拿到的宣传册丢了，能否寄一份",
    "请问贵公司的增值税号是多少",
]
