//! `render_prompt` is well-formed XML for every key and value, checked with
//! a real XML parser, and selects keys as the Python patterns do.

use proptest::prelude::*;
use rand::SeedableRng;
use serde_json::{Map, Value, json};
use steward_store::{pattern_matches, render_prompt};

use crate::jsongen;

fn items(xml: &str) -> Vec<(String, String)> {
    let doc = roxmltree::Document::parse(xml).unwrap_or_else(|e| panic!("{e}: {xml}"));
    let root = doc.root_element();
    assert_eq!(root.tag_name().name(), "memory");
    root.children()
        .filter(|n| n.is_element())
        .map(|n| {
            assert_eq!(n.tag_name().name(), "item");
            (
                n.attribute("key").expect("key attribute").to_string(),
                n.text().unwrap_or("").to_string(),
            )
        })
        .collect()
}

#[test]
fn keys_python_breaks_on_are_well_formed() {
    let mut m = Map::new();
    for k in ["my key", "1abc", "<a>", "", "a\"b&c", "tab\there", "x]]>y"] {
        m.insert(k.to_string(), json!(format!("v<{k}>&")));
    }
    m.insert("obj".into(), json!({"a": [1, 2.5, null], "é": "ü"}));
    let xml = render_prompt(&m, &["*"]);
    let got = items(&xml);
    assert_eq!(got.len(), m.len());
    for ((k, text), (mk, mv)) in got.iter().zip(&m) {
        assert_eq!(k, mk);
        match mv {
            Value::String(s) => assert_eq!(text, s),
            other => assert_eq!(serde_json::from_str::<Value>(text).unwrap(), *other),
        }
    }
    assert!(xml.contains(r#"{"a": [1, 2.5, null], "é": "ü"}"#), "{xml}");
}

#[test]
fn patterns_select_like_python() {
    let mut m = Map::new();
    for k in ["user_name", "user_age", "last_name", "topic", "username"] {
        m.insert(k.into(), json!(1));
    }
    let keys = |p: &[&str]| -> Vec<String> {
        items(&render_prompt(&m, p))
            .into_iter()
            .map(|(k, _)| k)
            .collect()
    };
    assert_eq!(keys(&["*"]).len(), 5);
    assert_eq!(keys(&["user_*"]), ["user_name", "user_age"]);
    assert_eq!(keys(&["*_name"]), ["user_name", "last_name"]);
    assert_eq!(keys(&["*name*"]), ["user_name", "last_name", "username"]);
    assert_eq!(keys(&["topic", "user_age"]), ["user_age", "topic"]);
    assert!(keys(&["nothing"]).is_empty());
    assert!(keys(&[]).is_empty());
}

#[test]
fn random_maps_render_well_formed_xml() {
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    for _ in 0..300 {
        let m = jsongen::map(&mut rng, 0, 8);
        let got = items(&render_prompt(&m, &["*"]));
        assert_eq!(got.len(), m.len());
        for ((k, _), mk) in got.iter().zip(m.keys()) {
            // Keys survive exactly unless they hold characters XML cannot carry.
            if !mk
                .chars()
                .any(|c| (c < ' ' && !"\t\n\r".contains(c)) || c == '\u{fffe}' || c == '\u{ffff}')
            {
                assert_eq!(k, mk);
            }
        }
    }
}

proptest! {
    #[test]
    fn prop_pattern_matches_like_a_regex(key in "[ab*]{0,6}", pattern in "[ab*]{0,5}") {
        // Model: '*' = any run; built as a tiny backtracking matcher.
        fn model(p: &[u8], k: &[u8]) -> bool {
            match p.split_first() {
                None => k.is_empty(),
                Some((b'*', rest)) => (0..=k.len()).any(|i| model(rest, &k[i..])),
                Some((c, rest)) => k.first() == Some(c) && model(rest, &k[1..]),
            }
        }
        let key = key.replace('*', "");
        prop_assert_eq!(pattern_matches(&pattern, &key), model(pattern.as_bytes(), key.as_bytes()));
    }
}
