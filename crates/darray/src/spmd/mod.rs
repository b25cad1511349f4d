//! SPMD: run one function on many processes that talk to each other directly.
