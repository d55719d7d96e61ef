//! The API as a service author uses it from outside the crate: a
//! `Config` made field by field, errors matched by kind.

use reprise_tower::{Config, Error, Mode, Reprise, Setting};

#[test]
fn fields_set_by_hand_are_named_as_fields() {
    let mut config = Config::default();
    config.sample = 3.0;
    let error = Reprise::start(config).err().map(|e| e.to_string());
    assert_eq!(
        error.as_deref(),
        Some("Config::sample = 3: expected a fraction between 0 and 1")
    );
    let mut config = Config::default();
    config.matches = vec!["colour=red".into()];
    let error = Reprise::start(config).err();
    assert!(
        matches!(
            &error,
            Some(Error::BadSetting {
                setting: Setting::Field("matches"),
                value,
                ..
            }) if value == "colour=red"
        ),
        "{error:?}"
    );
}

#[test]
fn errors_say_what_went_wrong_by_kind() {
    let error = Config::from_vars(|name| (name == "REPRISE_SAMPLE").then(|| "2".to_string())).err();
    assert!(
        matches!(
            &error,
            Some(Error::BadSetting {
                setting: Setting::Var("REPRISE_SAMPLE"),
                ..
            })
        ),
        "{error:?}"
    );
    let error = Reprise::builder().mode(Mode::Mock).build().err();
    assert!(
        matches!(
            error,
            Some(Error::NoTape {
                mode: Mode::Mock,
                ..
            })
        ),
        "{error:?}"
    );
    let dir = tempfile::tempdir().unwrap();
    let error = Reprise::builder()
        .mode(Mode::Record)
        .tape(dir.path())
        .build()
        .err();
    let source = error.as_ref().and_then(std::error::Error::source);
    assert!(
        matches!(error, Some(Error::TapeOpen { .. })) && source.is_some(),
        "{error:?}"
    );
    let error = Reprise::builder()
        .mode(Mode::Mock)
        .tape(dir.path().join("missing.tape"))
        .build()
        .err();
    assert!(
        matches!(&error, Some(Error::MockLoad { path, .. }) if path.ends_with("missing.tape")),
        "{error:?}"
    );
}

#[test]
fn max_body_takes_sizes_as_the_cli_does() {
    let config = Config::from_vars(|name| (name == "REPRISE_MAX_BODY").then(|| "64KiB".into()));
    assert_eq!(config.map(|c| c.max_body).ok(), Some(64 << 10));
}
