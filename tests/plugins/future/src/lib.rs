#![cfg(target_arch = "wasm32")]
//! A plugin from the future: it exports the contract's interfaces at version 0.2.0, whose
//! shapes this host does not know. The host must refuse it when it is uploaded, naming the
//! version, rather than fail at the first request.

wit_bindgen::generate!({
    inline: r#"
        package mapwright:plugin@0.2.0;

        interface meta {
            describe: func() -> string;
        }

        interface username {
            decide: func(user: string, hints: list<string>) -> string;
        }

        world rules {
            export meta;
            export username;
        }
    "#,
    world: "rules",
});

use exports::mapwright::plugin::{meta, username};

struct Future;

impl meta::Guest for Future {
    fn describe() -> String {
        "future 2.0".into()
    }
}

impl username::Guest for Future {
    fn decide(user: String, _hints: Vec<String>) -> String {
        user
    }
}

export!(Future);
