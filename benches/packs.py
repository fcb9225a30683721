#!/usr/bin/env python3
"""Large packs for the build measurements in docs/performance.md and docs/reliability.md.

    python3 benches/packs.py realistic 100000 > /tmp/realistic.csv
    python3 benches/packs.py junk 100000 > /tmp/junk.csv
    /usr/bin/time -v cargo run --release -- pack import --store big --quiet /tmp/realistic.csv

`realistic`: product questions and answers in Chinese and English, with similar questions, made
from a few hundred words (what a large catalogue's FAQ looks like to the build). `junk`: rows of
random 12- and 20-character strings, the attack that once took 11 GB. Deterministic (seeded).
"""
import csv
import random
import sys

ZH_ITEMS = ["羽绒服", "跑鞋", "保温杯", "蓝牙耳机", "双肩包", "连衣裙", "电饭煲", "台灯", "机械键盘", "行李箱",
            "床上四件套", "运动手环", "咖啡机", "吹风机", "羊毛衫", "牛仔裤", "儿童书包", "瑜伽垫", "空气炸锅", "加湿器"]
EN_ITEMS = ["down jacket", "running shoes", "vacuum flask", "bluetooth earbuds", "backpack", "dress", "rice cooker",
            "desk lamp", "mechanical keyboard", "suitcase", "bedding set", "fitness band", "coffee machine",
            "hair dryer", "wool sweater", "jeans", "school bag", "yoga mat", "air fryer", "humidifier"]
ZH_ASKS = [("{i}号{item}怎么清洗", ["{i}号{item}能机洗吗", "{item}{i}洗涤方法"], "{i}号{item}请用中性洗涤剂手洗，水温不超过30度，平铺晾干。"),
           ("{i}号{item}保修多久", ["{item}{i}坏了能修吗", "{i}号{item}质保期"], "{i}号{item}整机保修一年，人为损坏除外，凭订单号申请。"),
           ("{i}号{item}有哪些颜色", ["{item}{i}有黑色吗", "{i}号{item}颜色可选"], "{i}号{item}有黑、白、灰三色，以商品页为准。"),
           ("{i}号{item}多久发货", ["{item}{i}什么时候发", "{i}号{item}今天能发吗"], "{i}号{item}下午四点前付款当天发出，其余次日发出。")]
EN_ASKS = [("how do I wash the {item} no. {i}", ["can {item} {i} go in the washer", "cleaning {item} {i}"], "Hand wash the {item} no. {i} below 30°C and dry it flat."),
           ("what is the warranty on {item} {i}", ["is {item} {i} covered if it breaks", "{item} {i} guarantee"], "The {item} no. {i} has a one-year warranty; accidental damage is not covered."),
           ("which colours does {item} {i} come in", ["is {item} {i} available in black", "{item} {i} colour options"], "The {item} no. {i} comes in black, white and grey."),
           ("when does {item} {i} ship", ["how soon will {item} {i} be sent", "does {item} {i} ship today"], "Orders for the {item} no. {i} placed before 4 pm ship the same day.")]


def realistic(n, out):
    out.writerow(["question", "similar", "answer"])
    for k in range(n):
        i, item = k // 40, k % 20
        asks = ZH_ASKS if (k // 20) % 2 == 0 else EN_ASKS
        items = ZH_ITEMS if asks is ZH_ASKS else EN_ITEMS
        question, similar, answer = asks[(k // 160) % 4]
        fill = {"i": i, "item": items[item]}
        out.writerow([question.format(**fill), "|".join(s.format(**fill) for s in similar), answer.format(**fill)])


def junk(n, out):
    rng = random.Random(13)
    letters = "abcdefghijklmnopqrstuvwxyz0123456789"
    out.writerow(["question", "answer"])
    for _ in range(n):
        out.writerow(["".join(rng.choice(letters) for _ in range(12)), "".join(rng.choice(letters) for _ in range(20))])


if __name__ == "__main__":
    kind, n = sys.argv[1], int(sys.argv[2])
    {"realistic": realistic, "junk": junk}[kind](n, csv.writer(sys.stdout, lineterminator="\n"))
