//! The reply templates of task intents: minijinja, a small template language with no code
//! execution, over the slots and the fields of the store's answer.
//!
//! A template may test any field (`{% if eta %}`) but printing one that is not there is an
//! error, so that a reply never says "已由  揽收" with the carrier missing: the call counts as
//! failed instead. Rendering runs on fuel, so no template can loop for long; values are text
//! and are never evaluated as template code.

use std::sync::LazyLock;

use minijinja::{Environment, UndefinedBehavior};

/// The instructions one rendering may run: far more than any reply needs.
const FUEL: u64 = 50_000;

/// The longest rendered reply, in characters; past it the reply is cut.
pub const MAX_REPLY_CHARS: usize = 2000;

static ENVIRONMENT: LazyLock<Environment<'static>> = LazyLock::new(|| {
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::SemiStrict);
    env.set_fuel(Some(FUEL));
    env
});

/// Checks that `source` is a template; the error says where it is wrong.
pub fn check(source: &str) -> Result<(), String> {
    ENVIRONMENT.template_from_str(source).map(|_| ()).map_err(|e| describe(&e))
}

/// Fills `source` with `values` (a JSON object). The error names what was missing or wrong.
pub fn render(source: &str, values: &serde_json::Value) -> Result<String, String> {
    let template = ENVIRONMENT.template_from_str(source).map_err(|e| describe(&e))?;
    let text =
        template.render(minijinja::Value::from(minijinja::value::Serde(values))).map_err(|e| describe(&e))?;
    let text = text.trim();
    Ok(match text.char_indices().nth(MAX_REPLY_CHARS) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_owned(),
    })
}

fn describe(error: &minijinja::Error) -> String {
    match error.line() {
        Some(line) => format!("{} (line {line})", error.detail().unwrap_or(&error.to_string())),
        None => error.detail().map_or_else(|| error.to_string(), str::to_owned),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn fields_fill_the_template_and_branches_test_them() {
        let template = "{% if found %}订单 {{ order }} 已由 {{ carrier }} 揽收{% if eta %}，预计 {{ eta }} 送达{% endif %}{% else %}没有找到订单 {{ order }}{% endif %}";
        let shipped = json!({"order": "2026112312345678", "found": true, "carrier": "顺丰速运"});
        assert_eq!(render(template, &shipped).unwrap(), "订单 2026112312345678 已由 顺丰速运 揽收");
        let missing = json!({"order": "1234567890", "found": false});
        assert_eq!(render(template, &missing).unwrap(), "没有找到订单 1234567890");
    }

    #[test]
    fn a_missing_field_is_an_error_and_values_are_not_code() {
        let error = render("已由 {{ carrier }} 揽收", &json!({"order": "1"})).unwrap_err();
        assert!(error.contains("undefined"), "{error}");
        let sly = json!({"carrier": "{{ 7 * 7 }}{% for x in range(99999) %}x{% endfor %}"});
        assert_eq!(render("{{ carrier }}", &sly).unwrap(), sly["carrier"].as_str().unwrap());
    }

    #[test]
    fn templates_cannot_run_long_or_say_too_much() {
        assert!(check("{% if x %}unclosed").is_err());
        let forever = "{% for a in range(1000) %}{% for b in range(1000) %}x{% endfor %}{% endfor %}";
        assert!(render(forever, &json!({})).is_err());
        let long = render("{{ text }}", &json!({"text": "字".repeat(5000)})).unwrap();
        assert_eq!(long.chars().count(), MAX_REPLY_CHARS + 1);
    }
}
