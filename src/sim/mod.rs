//! AMI simulator (being written).
