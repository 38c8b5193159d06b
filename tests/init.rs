//! `tandem init` and `tandem completions`.
