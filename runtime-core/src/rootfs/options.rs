//! Mount option strings (`ro`, `nosuid`, `rbind`, `rprivate`, `lowerdir=…`) to flags and data.
