"""Text content of the sample data: the sensor manual (.md), a support web page (.html) and notices.

NOTICES maps a file name to (encoding, text). The boilerplate footer closes every notice; the
exact duplicate and the near duplicate are derived from the originals in make_examples.py.
"""

from __future__ import annotations

from xinghe_company import BOILERPLATE, HOTLINE, NOTICE_MOBILE, SERVICE_MAIL, WEBSITE

SENSOR_MD = f"""# XH-S200 系列激光位移传感器 快速入门 (Quick Start Guide)

XH-S200 系列是星河精密推出的三角测量式激光位移传感器（laser triangulation displacement
sensor），用于在线测量工件厚度、高度差和振动。本指南适用于 XH-S200-30、XH-S200-50 和
XH-S200-100 三个型号。

## 1. 型号与参数 Models and Specifications

| 型号 Model | 测量中心距 Center | 量程 Range | 重复精度 Repeatability | 采样频率 Sampling |
| --- | --- | --- | --- | --- |
| XH-S200-30 | 30 mm | ±5 mm | 0.5 μm | 50 kHz |
| XH-S200-50 | 50 mm | ±10 mm | 1 μm | 50 kHz |
| XH-S200-100 | 100 mm | ±35 mm | 4 μm | 20 kHz |

- 光源：655 nm 红色半导体激光，2 类激光产品（Class 2），请勿直视光束。
- 供电：DC 24 V ±10%，功耗 ≤ 2.5 W。
- 输出：4—20 mA 模拟量、RS-485（Modbus RTU）、NPN/PNP 开关量各一路。
- 防护等级：IP67；工作温度 0—50 ℃。

## 2. 安装 Installation

1. 使用附带的 M4 螺钉将传感器固定在安装支架上，紧固力矩 0.8 N·m。
2. 调整距离，使被测面位于测量中心距附近，此时传感器上的绿色 CENTER 指示灯亮起。
3. 测量镜面或高反光工件时，将传感器倾斜 5°—10° 安装，避免正反射光进入接收镜头。
4. 电缆弯曲半径不小于 30 mm，远离变频器和伺服电机动力线。

## 3. 接线 Wiring

| 线色 Color | 定义 Signal |
| --- | --- |
| 棕 Brown | +24 V |
| 蓝 Blue | 0 V |
| 黑 Black | 开关量输出 OUT1 |
| 白 White | 4—20 mA |
| 粉 Pink / 灰 Grey | RS-485 A / B |

## 4. Modbus 通讯 Modbus RTU

出厂默认：站号 1，波特率 115200，8 数据位，无校验，1 停止位。测量值保存在保持寄存器
40001—40002（32 位有符号整数，单位 0.1 μm）。读取示例：

```
01 03 00 00 00 02 C4 0B
```

## 5. 零点标定 Zero Calibration

将标准块放在测量位置，长按 ZERO 键 3 秒，显示屏闪烁 “0.000” 后松开即完成零点标定。
恢复出厂设置：同时按住 ZERO 和 MODE 键 5 秒。

## 6. 技术支持 Support

客户服务热线 {HOTLINE}，服务邮箱 {SERVICE_MAIL}，更多资料请访问 {WEBSITE}。
"""

SENSOR_HTML = f"""<!DOCTYPE html>
<html lang="zh-CN">
<head>
<meta charset="utf-8">
<title>XH-S200 故障排除 | 星河精密 技术支持</title>
<style>
body {{ font-family: "Microsoft YaHei", sans-serif; }}
nav a {{ margin-right: 1em; }}
</style>
<script>
window.dataLayer = window.dataLayer || [];
function track(e) {{ dataLayer.push({{event: e, page: "xh-s200-troubleshooting"}}); }}
</script>
</head>
<body>
<nav class="top-nav">
<a href="/">首页</a> <a href="/products">产品中心</a> <a href="/support">技术支持</a>
<a href="/about">关于我们</a> <a href="/contact">联系我们</a> <a href="/en">English</a>
</nav>
<div class="breadcrumb">首页 &gt; 技术支持 &gt; 传感器 &gt; XH-S200</div>
<main>
<h1>XH-S200 激光位移传感器 故障排除 (Troubleshooting)</h1>
<p>本页列出 XH-S200 系列最常见的故障现象、可能原因和处理方法。处理前请先断电，并确认供电电压为
DC&nbsp;24&nbsp;V&nbsp;&plusmn;10%。</p>
<h2>1. 指示灯不亮 (No power)</h2>
<p>检查棕色线（+24&nbsp;V）和蓝色线（0&nbsp;V）是否接反；电源容量应 &ge; 5&nbsp;W。
若电源正常而指示灯仍不亮，请联系售后更换传感器。</p>
<h2>2. 测量值跳动 (Unstable readings)</h2>
<ul>
<li>被测面粗糙或有油污 &mdash; 清洁工件表面，或将平均次数设为 64 次以上；</li>
<li>周围有强光干扰 &mdash; 加装遮光罩，避免阳光或焊接弧光直射；</li>
<li>电缆与动力线并行 &mdash; 分开走线，屏蔽层单端接地。</li>
</ul>
<h2>3. 显示 &quot;----&quot; (Out of range)</h2>
<p>被测面超出量程或反射光太弱。请将距离调整到测量中心距 &plusmn; 量程内；测量黑色橡胶等
低反射率材料时，将曝光模式设为 &lt;HIGH&gt;。</p>
<h2>4. RS-485 无响应 (No Modbus response)</h2>
<p>确认站号、波特率与 PLC 一致，A/B 线未接反，总线两端接 120&nbsp;&Omega; 终端电阻。
温度补偿后的读数单位为 0.1&nbsp;&micro;m，环境温度应在 0&ndash;50&nbsp;&#8451;。</p>
<p>仍无法解决？请拨打服务热线 {HOTLINE} 或发送邮件至 {SERVICE_MAIL}，并注明传感器序列号。</p>
</main>
<aside class="related">相关文档：<a href="/docs/xh-s200-quickstart">XH-S200 快速入门</a>
<a href="/docs/xh-s200-modbus">Modbus 寄存器表</a></aside>
<footer>
<p>&copy; 2025 星河精密制造有限公司 Xinghe Precision Manufacturing Co., Ltd. 版权所有
&nbsp;|&nbsp; <a href="/privacy">隐私政策</a> &nbsp;|&nbsp; 苏ICP备00000000号-1</p>
</footer>
<script>track("page_view");</script>
</body>
</html>
"""


SPRING_FESTIVAL = f"""关于 2025 年春节放假安排的通知

各部门、各车间：

根据国务院办公厅通知精神，结合公司生产计划，现将 2025 年春节放假安排通知如下：

一、放假时间：2025 年 1 月 28 日（除夕）至 2 月 4 日（初七）放假调休，共 8 天。1 月 26 日（周日）
和 2 月 8 日（周六）正常上班。

二、生产安排：机加工一车间、装配车间于 1 月 27 日 12:00 前完成在制品入库和设备清扫；
节前最后一个班次须执行全厂设备断电检查，空压机、冷却塔由设备部安排专人值守。

三、安全要求：放假前各部门负责人须组织一次安全检查，重点检查电源、气源、危化品仓库和门窗；
检查记录于 1 月 27 日 17:00 前提交 EHS 部门。

四、客户服务：春节期间客户服务热线 {HOTLINE} 正常接听，紧急维修由售后服务部值班工程师响应。

特此通知。

星河精密制造有限公司 行政部
2025 年 1 月 10 日

{BOILERPLATE}
"""

SAFETY_TRAINING = f"""关于开展 2025 年度安全生产培训的通知

各部门：

为落实安全生产主体责任，提高员工安全意识和应急处置能力，公司决定开展 2025 年度安全生产培训。
现将有关事项通知如下：

一、培训对象：全体生产一线员工、班组长、设备维修人员及新入职员工。

二、培训内容：
1. 数控机床安全操作规程与上锁挂牌（LOTO）程序；
2. 叉车、行车等特种设备安全；
3. 切削液、液压油等危险化学品的储存与泄漏处置；
4. 火灾逃生与灭火器使用实操演练。

三、培训安排：3 月 10 日至 3 月 21 日，每天 14:00—16:00，地点为二号楼一层培训教室。
各部门按 EHS 部门发布的排班表分批参加，不得缺席。

四、考核要求：培训结束后进行闭卷考试，80 分及格。不及格者须参加补考，补考仍不及格的暂停上岗资格。

星河精密制造有限公司 EHS 部
2025 年 3 月 3 日

{BOILERPLATE}
"""

IT_SECURITY = f"""关于加强办公电脑信息安全管理的通知

各部门：

近期外部钓鱼邮件明显增多，部分邮件冒充客户或供应商，附件中含有恶意程序。为保护公司图纸、
工艺文件和客户数据安全，现就有关要求通知如下：

一、不打开来历不明的邮件附件和链接，尤其是 .exe、.js、.vbs 以及带宏的 Office 文档。

二、办公电脑须开启屏幕锁定，离开工位时按 Win+L 锁屏；密码每 90 天更换一次，长度不少于 12 位。

三、严禁将公司技术资料上传至个人网盘或公共 AI 工具（Public AI tools）。如需使用大模型辅助工作，
请使用公司内部部署的“星河智问”助手。

四、发现可疑邮件请立即转发至信息部，或拨打 IT 服务台值班手机 {NOTICE_MOBILE}。

信息部
2025 年 4 月 15 日

{BOILERPLATE}
"""

QUALITY_MONTH = f"""关于开展 2025 年“质量月”活动的通知

各部门、各车间：

为进一步提升产品质量，降低客户投诉率，公司决定于 2025 年 9 月开展以“精益求精，零缺陷交付”
为主题的质量月活动。现将具体安排通知如下：

一、活动时间：2025 年 9 月 1 日至 9 月 30 日。

二、活动内容：
1. 质量知识竞赛：各车间组队参加，9 月 12 日举行决赛；
2. QC 小组成果发布：围绕 XH-CNC-500 主轴装配一次合格率、XH-S200 传感器标定效率等课题发布改进成果；
3. 质量隐患随手拍：员工通过 OA 系统上报质量隐患，经确认后每条奖励 50 元；
4. 客户回访：售后服务部对近一年交付的 XH-CNC-500 用户进行电话回访，收集改进建议。

三、考核与奖励：活动结束后评选优秀 QC 小组 3 个、质量之星 10 名，在 10 月全员大会上表彰。

请各部门高度重视，认真组织，确保活动取得实效。

星河精密制造有限公司 质量部
2025 年 8 月 20 日

{BOILERPLATE}
"""

NEW_PRODUCT = f"""新品发布公告：XH-T10 无线温度传感器正式上市

星河精密 XH-T10 无线温度传感器于 2025 年 6 月 1 日正式上市。XH-T10 采用 LoRa 无线通讯，
测量范围 -40—125 ℃，精度 ±0.3 ℃，一节 ER14505 锂电池可连续工作 3 年，适用于主轴轴承、
电机和液压站的温度在线监测。

Product announcement: the XH-T10 wireless temperature sensor is available from June 1, 2025.
It measures from -40 to 125 °C with ±0.3 °C accuracy and runs for three years on one battery.
Readings go to the XH-Link monitoring platform, which raises an alarm when a bearing runs hot.

首批用户可享受 9 折优惠及免费安装调试服务。订购请联系各区域销售中心，或拨打 {HOTLINE}。

星河精密制造有限公司 市场部
2025 年 5 月 20 日

{BOILERPLATE}
"""

# The near duplicate of the quality-month notice: re-issued with one date and one prize changed.
QUALITY_MONTH_REISSUED = QUALITY_MONTH.replace("9 月 12 日举行决赛", "9 月 19 日举行决赛").replace(
    "每条奖励 50 元", "每条奖励 100 元"
)

# Mostly symbols and mojibake: what a bad export or a wrong code page produces.
NOISE = (
    "锟斤拷锟斤拷烫烫烫屯屯屯 ##@@!!$$%%^^&&**(( )) ~~~ |||| \\\\ //// <<<>>> ???? \n"
    "�������� ���� Ã¦ËœÅ¸Ã¦Â²Â³ Ã§Â²Â¾Ã¥Â¯â€  ====== ------ ++++++ ______\n"
    "#$%&'()*+,-./:;<=>?@[\\]^_`{|}~ #$%&'()*+,-./:;<=>?@[\\]^_`{|}~ 0x00 0xFF 0xFE\n"
    "□□□□■■■■◆◆◆◇◇◇ ▲▲▼▼ ※※※ ＊＊＊ ＃＃＃ ＠＠＠ ￥￥￥ 烫烫烫烫\n"
)

NOTICES: dict[str, tuple[str, str]] = {
    "notice_spring_festival.txt": ("utf-8", SPRING_FESTIVAL),
    "notice_safety_training_gbk.txt": ("gbk", SAFETY_TRAINING),
    "notice_it_security_utf16.txt": ("utf-16", IT_SECURITY),
    "notice_quality_month_bom.txt": ("utf-8-sig", QUALITY_MONTH),
    "announcement_xh_t10.txt": ("utf-8", NEW_PRODUCT),
    "notice_spring_festival_copy.txt": ("utf-8", SPRING_FESTIVAL),
    "notice_quality_month_reissued.txt": ("utf-8", QUALITY_MONTH_REISSUED),
    "noise_garbled.txt": ("utf-8", NOISE),
}
