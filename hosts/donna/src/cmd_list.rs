//! `donna spaces | layers | devices | searchers`: what is compiled in or loaded.

use donna_sdk::{registry, SpaceConfig};

use crate::table::render;

pub fn spaces() -> anyhow::Result<()> {
    let config = SpaceConfig::default();
    let mut rows = Vec::new();
    for p in registry::spaces() {
        let space = p.build(&config)?;
        let options: Vec<String> = space.blocks().iter().map(|b| b.options.len().to_string()).collect();
        rows.push(vec![
            p.name().to_owned(),
            space.blocks().len().to_string(),
            options.join("x"),
            space.size().to_string(),
            p.summary().to_owned(),
        ]);
    }
    print!("{}", render(&["space", "blocks", "options", "architectures", "summary"], &rows));
    Ok(())
}

pub fn layers() -> anyhow::Result<()> {
    let rows: Vec<Vec<String>> =
        registry::layer_types().iter().map(|l| vec![l.name().to_owned(), l.summary().to_owned()]).collect();
    print!("{}", render(&["layer type", "summary"], &rows));
    Ok(())
}

pub fn devices() -> anyhow::Result<()> {
    let rows: Vec<Vec<String>> =
        registry::devices().iter().map(|d| vec![d.name().to_owned(), d.summary().to_owned()]).collect();
    if rows.is_empty() {
        println!("no devices registered");
    } else {
        print!("{}", render(&["device", "summary"], &rows));
    }
    Ok(())
}

pub fn searchers() -> anyhow::Result<()> {
    let rows: Vec<Vec<String>> =
        registry::searchers().iter().map(|s| vec![s.name().to_owned(), s.summary().to_owned()]).collect();
    if rows.is_empty() {
        println!("no searchers registered");
    } else {
        print!("{}", render(&["searcher", "summary"], &rows));
    }
    Ok(())
}
