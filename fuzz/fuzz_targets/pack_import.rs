//! Any bytes, as a pack upload in every format and as detected: a clear error or a pack,
//! never a panic; a pack that imports also validates and exports.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mibot::knowledge::formats::{self, Format};

const FORMATS: [Format; 6] =
    [Format::Json, Format::Yaml, Format::Toml, Format::Csv, Format::QnaTsv, Format::DialogflowCsv];

fuzz_target!(|data: &[u8]| {
    for format in FORMATS.into_iter().map(Some).chain([None]) {
        if let Ok(imported) = formats::import(data, format, Some("upload")) {
            let _ = imported.pack.validate();
            let _ = imported.pack.check_sizes(mibot::knowledge::pack::SizeLimits::default());
            let _ = formats::export(&imported.pack, Format::Json);
        }
    }
});
