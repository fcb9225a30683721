//! The demo store's order book: a handful of made-up orders that answer its tasks the way a
//! store's own endpoint would (`docs/actions.md` has the fields), so that the demo's
//! "我的快递到哪了 订单号 2026112312345678" is a real lookup. Nothing here is a real order.

use serde_json::{Map, Value, json};

/// The store whose tasks the book answers.
pub const STORE: &str = "demo";

/// The tasks the book answers.
const TASKS: [&str; 4] = ["order_status", "urge_shipping", "change_address", "cancel_order"];

/// Where an order stands.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Status {
    Unpaid,
    Unshipped,
    Shipped,
    Delivered,
    Cancelled,
}

impl Status {
    fn as_str(self) -> &'static str {
        match self {
            Status::Unpaid => "unpaid",
            Status::Unshipped => "unshipped",
            Status::Shipped => "shipped",
            Status::Delivered => "delivered",
            Status::Cancelled => "cancelled",
        }
    }
}

/// One made-up order; texts are `(zh, en)`.
struct Order {
    number: &'static str,
    status: Status,
    total: &'static str,
    carrier: (&'static str, &'static str),
    tracking: &'static str,
    last_event: (&'static str, &'static str),
    last_event_at: &'static str,
    eta: (&'static str, &'static str),
    ships_by: (&'static str, &'static str),
}

const NONE: (&str, &str) = ("", "");

const BOOK: [Order; 5] = [
    Order {
        number: "2026112312345678",
        status: Status::Shipped,
        total: "¥2,999.00",
        carrier: ("顺丰速运", "SF Express"),
        tracking: "SF1402236678120",
        last_event: (
            "【深圳市】快件已到达 深圳宝安转运中心",
            "Arrived at the Shenzhen Bao'an sorting centre",
        ),
        last_event_at: "12-02 18:40",
        eta: ("12月4日", "Dec 4"),
        ships_by: NONE,
    },
    Order {
        number: "2026112298765432",
        status: Status::Unshipped,
        total: "¥399.00",
        carrier: NONE,
        tracking: "",
        last_event: NONE,
        last_event_at: "",
        eta: NONE,
        ships_by: ("12月3日 18:00 前", "by 18:00 on Dec 3"),
    },
    Order {
        number: "2026111855554444",
        status: Status::Delivered,
        total: "¥129.00",
        carrier: ("中通快递", "ZTO Express"),
        tracking: "ZT7730019284456",
        last_event: ("已签收，签收人：本人", "Delivered, signed for by the addressee"),
        last_event_at: "11-21 14:05",
        eta: NONE,
        ships_by: NONE,
    },
    Order {
        number: "2026112000001111",
        status: Status::Cancelled,
        total: "¥89.00",
        carrier: NONE,
        tracking: "",
        last_event: NONE,
        last_event_at: "",
        eta: NONE,
        ships_by: NONE,
    },
    Order {
        number: "2026112511112222",
        status: Status::Unpaid,
        total: "¥1,299.00",
        carrier: NONE,
        tracking: "",
        last_event: NONE,
        last_event_at: "",
        eta: NONE,
        ships_by: NONE,
    },
];

/// Whether the book answers `task`.
pub fn knows(task: &str) -> bool {
    TASKS.contains(&task)
}

/// The book's answer to a task request (the JSON body a store's endpoint gets).
pub fn answer(task: &str, request: &Value) -> Result<Value, String> {
    if !knows(task) {
        return Err(format!("the demo order book does not do {task}"));
    }
    let slot = |name: &str| request["slots"][name].as_str().unwrap_or_default().trim().to_owned();
    let number = slot("order");
    let zh = request["lang"].as_str() != Some("en");
    let pick = |(z, e): (&'static str, &'static str)| if zh { z } else { e };
    let Some(order) = BOOK.iter().find(|o| o.number == number) else {
        return Ok(json!({"order": number, "found": false}));
    };
    let mut out = Map::new();
    out.insert("order".into(), json!(order.number));
    out.insert("found".into(), json!(true));
    out.insert("status".into(), json!(order.status.as_str()));
    let mut put = |key: &str, value: &str| {
        if !value.is_empty() {
            out.insert(key.into(), json!(value));
        }
    };
    let shipped = matches!(order.status, Status::Shipped | Status::Delivered);
    let open = matches!(order.status, Status::Unpaid | Status::Unshipped);
    match task {
        "order_status" => {
            put("carrier", pick(order.carrier));
            put("tracking", order.tracking);
            put("last_event", pick(order.last_event));
            put("last_event_at", order.last_event_at);
            put("eta", pick(order.eta));
            put("ships_by", pick(order.ships_by));
        }
        "urge_shipping" => {
            put("ships_by", pick(order.ships_by));
            put("carrier", pick(order.carrier));
            put("tracking", order.tracking);
            out.insert("urged".into(), json!(order.status == Status::Unshipped));
        }
        "change_address" => {
            let address = slot("address");
            if open && !address.is_empty() {
                out.insert("changed".into(), json!(true));
                out.insert("address".into(), json!(masked(&address)));
            } else {
                out.insert("changed".into(), json!(false));
                let reason = match (shipped, order.status) {
                    (true, _) => pick((
                        "订单已发货，地址无法修改",
                        "it has shipped, so the address can no longer change",
                    )),
                    (_, Status::Cancelled) => pick(("订单已取消", "the order was cancelled")),
                    _ => pick(("没有收到新的地址", "no new address was given")),
                };
                out.insert("reason".into(), json!(reason));
            }
        }
        _ => {
            // cancel_order
            if open {
                out.insert("cancelled".into(), json!(true));
                out.insert("refund".into(), json!(order.total));
                let days = pick(("1–3 个工作日", "1–3 business days"));
                out.insert("refund_days".into(), json!(days));
            } else {
                out.insert("cancelled".into(), json!(false));
                let reason = match order.status {
                    Status::Cancelled => pick(("订单已经取消过了", "it was already cancelled")),
                    _ => pick((
                        "订单已发货，请签收后申请退货",
                        "it has shipped; please request a return once it arrives",
                    )),
                };
                out.insert("reason".into(), json!(reason));
            }
        }
    }
    Ok(Value::Object(out))
}

/// An address as a store would repeat it back: the start, then the rest hidden.
fn masked(address: &str) -> String {
    let keep: String = address.chars().take(8).collect();
    if address.chars().count() > 8 { format!("{keep}****") } else { keep }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ask(task: &str, order: &str, lang: &str) -> Value {
        let request = json!({"task": task, "lang": lang, "slots": {"order": order, "address": "上海市浦东新区世纪大道100号"}});
        answer(task, &request).unwrap()
    }

    #[test]
    fn orders_are_looked_up_in_the_shoppers_language() {
        let shipped = ask("order_status", "2026112312345678", "zh");
        assert_eq!(
            (shipped["status"].as_str(), shipped["carrier"].as_str()),
            (Some("shipped"), Some("顺丰速运"))
        );
        assert_eq!(ask("order_status", "2026112312345678", "en")["carrier"], "SF Express");
        assert_eq!(ask("order_status", "1111111111", "zh"), json!({"order": "1111111111", "found": false}));
    }

    #[test]
    fn what_can_still_change_depends_on_the_order() {
        assert_eq!(ask("cancel_order", "2026112298765432", "zh")["cancelled"], true);
        assert_eq!(ask("cancel_order", "2026112312345678", "zh")["cancelled"], false);
        let changed = ask("change_address", "2026112298765432", "zh");
        assert_eq!(changed["address"], "上海市浦东新区世****");
        assert_eq!(ask("change_address", "2026111855554444", "zh")["changed"], false);
        assert_eq!(ask("urge_shipping", "2026112298765432", "en")["urged"], true);
        assert!(answer("refund_everything", &json!({})).is_err());
    }

    #[test]
    fn every_shipped_task_reply_fills_from_every_answer_the_book_gives() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("intents");
        let intents = crate::intents::IntentSet::load_dir(&dir).unwrap();
        let numbers = BOOK.iter().map(|o| o.number).chain(["1999999999"]);
        for number in numbers {
            for task in TASKS {
                let intent =
                    intents.intents().iter().find(|i| i.task.as_ref().is_some_and(|t| t.name == task));
                let template =
                    &intent.unwrap_or_else(|| panic!("no intent does {task}")).task.as_ref().unwrap().answer;
                for lang in ["zh", "en"] {
                    let request = json!({"lang": lang, "slots": {"order": number, "address": "上海市浦东新区世纪大道100号"}});
                    let mut values = request["slots"].clone();
                    let fields = answer(task, &request).unwrap();
                    values.as_object_mut().unwrap().extend(fields.as_object().unwrap().clone());
                    let lang = if lang == "zh" { crate::domain::Lang::Zh } else { crate::domain::Lang::En };
                    let reply = crate::intents::template::render(template.get(lang), &values)
                        .unwrap_or_else(|e| panic!("{task} for {number} in {lang:?}: {e}"));
                    assert!(reply.contains(number), "{task} for {number}: {reply}");
                }
            }
        }
    }
}
