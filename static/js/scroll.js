// Keep the newest message in view while it grows, unless the reader scrolled up;
// then "Jump to latest" appears while new text arrives below.

const NEAR_BOTTOM_PX = 80;

export function keepPinned(scroller, content, jumpButton = null) {
  let pinned = true;
  const toBottom = () => {
    scroller.scrollTop = scroller.scrollHeight;
  };
  const showJump = (show) => {
    if (jumpButton && jumpButton.hidden === show) jumpButton.hidden = !show;
  };
  scroller.addEventListener(
    "scroll",
    () => {
      pinned = scroller.scrollHeight - scroller.scrollTop - scroller.clientHeight < NEAR_BOTTOM_PX;
      if (pinned) showJump(false);
    },
    { passive: true },
  );
  // A wheel turned upwards unpins at once, before the scroll event: text
  // arriving in between must not pull the reader back down.
  scroller.addEventListener(
    "wheel",
    (event) => {
      if (event.deltaY < 0) pinned = false;
    },
    { passive: true },
  );
  new MutationObserver(() => {
    if (pinned) toBottom();
    else if (scroller.scrollHeight - scroller.scrollTop - scroller.clientHeight >= NEAR_BOTTOM_PX) showJump(true);
  }).observe(content, { childList: true, subtree: true, characterData: true });
  jumpButton?.addEventListener("click", () => {
    pinned = true;
    toBottom();
    showJump(false);
    document.getElementById("composer-input")?.focus();
  });
  toBottom();
  return {
    /** Stop following the newest message (the reader is taken to an older one). */
    unpin() {
      pinned = false;
    },
    pin() {
      pinned = true;
      toBottom();
      showJump(false);
    },
  };
}
