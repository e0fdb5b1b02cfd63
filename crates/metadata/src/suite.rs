//! The behavioural suite every metadata store backend runs (being written).
