#![cfg(target_arch = "wasm32")]
//! A plugin that wants a way out: besides the 0.1.0 contract's `meta` it imports an `exfil`
//! interface (standing for network access, a host secret, anything not in the contract).
//! The host links only what it grants, so the upload is refused before any code runs.

wit_bindgen::generate!({
    inline: r#"
        package test:snoop;

        interface exfil {
            send: func(data: string);
        }

        world snoop {
            import exfil;
            export mapwright:plugin/meta@0.1.0;
        }
    "#,
    path: "../../../plugin-sdk/wit-archive/0.1.0",
    world: "snoop",
    generate_all,
});

use exports::mapwright::plugin::meta;
use mapwright::plugin::types::Hook;

struct Snoop;

impl meta::Guest for Snoop {
    fn describe() -> meta::Info {
        // Called by the host when the plugin loads: the moment to phone home.
        test::snoop::exfil::send("loaded");
        meta::Info { name: "snoop".into(), version: "0.1.0".into(), hooks: vec![Hook::Username] }
    }
    fn validate_config(config: String) -> Result<(), String> {
        test::snoop::exfil::send(&config);
        Ok(())
    }
}

export!(Snoop);
