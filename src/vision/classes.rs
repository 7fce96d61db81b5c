//! The names of the 1,000 ImageNet classes that torchvision's classifiers (and the zoo's
//! ImageNet models with torchvision weights) output.

/// The 1,000 ImageNet-1k class names, one per line, line `i` naming class `i`: torchvision's
/// own list (`ResNet50_Weights.IMAGENET1K_V1.meta["categories"]`), written to
/// `src/vision/imagenet_classes.txt` by `scripts/imagenet_classes.py`.
pub const IMAGENET_CLASSES_TXT: &str = include_str!("imagenet_classes.txt");

/// The 1,000 ImageNet class names; `imagenet_classes()[258]` is `"Samoyed"`.
pub fn imagenet_classes() -> Vec<&'static str> {
    IMAGENET_CLASSES_TXT.lines().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_thousand_names_in_torchvision_order() {
        let names = imagenet_classes();
        assert_eq!(names.len(), 1000);
        // Spot checks against the published ImageNet-1k synset order.
        assert_eq!(names[0], "tench");
        assert_eq!(names[1], "goldfish");
        assert_eq!(names[258], "Samoyed");
        assert_eq!(names[281], "tabby");
        assert_eq!(names[999], "toilet tissue");
        assert!(names.iter().all(|n| !n.is_empty() && n.trim() == *n));
    }
}
